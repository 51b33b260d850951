"""Flow records and failure reports as JSON: what ``--json`` prints and the dashboard serves."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from executor.pb.dagyo.v1.failure_pb2 import FailureKind, FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

FLOW_STATES = {
    number: name.removeprefix("FLOW_STATE_").lower() for name, number in pb.FlowState.items()
}
NODE_STATES = {
    number: name.removeprefix("NODE_STATE_").lower() for name, number in pb.NodeState.items()
}
FAILURE_KINDS = {
    number: name.removeprefix("FAILURE_KIND_").lower() for name, number in FailureKind.items()
}


def export_value(value_json: str) -> Any:
    """An export's value, parsed from the JSON the record keeps (the text when it is not)."""
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def _as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )


def failure_dict(report: FailureReport) -> dict[str, Any]:
    """A failure report as JSON, its kind a lowercase word (``panic``, ``lost``, …)."""
    data = _as_dict(report)
    data["kind"] = FAILURE_KINDS.get(report.kind, "unspecified")
    return data


def record_dict(record: pb.FlowRecord) -> dict[str, Any]:
    """A flow record as JSON: states as lowercase words, export values parsed."""
    data = _as_dict(record)
    data.pop("flow_json", None)  # the flow as submitted: the user has it, and it can be large
    data["state"] = FLOW_STATES.get(record.state, "unspecified")
    for node, raw in zip(data["nodes"], record.nodes, strict=True):
        node["state"] = NODE_STATES.get(raw.state, "unspecified")
    data["failure"] = failure_dict(record.failure) if record.HasField("failure") else None
    data["exports"] = [
        {"export": e.export, "value": export_value(e.value_json)} for e in record.exports
    ]
    return data
