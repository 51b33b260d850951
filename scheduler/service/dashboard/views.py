"""What the dashboard's JSON API answers: records, a flow's graph, failures, the catalogue."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from executor.core.errors import DagyoError
from executor.core.progdef import Progdef, is_type_variable
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.client.records import failure_dict, record_dict
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.exports import OFFLOADED

# The first export items a flow page shows; the download has every item kept.
EXPORTS_SHOWN = 50


def record_view(record: pb.FlowRecord, *, with_exports: bool = True) -> dict[str, Any]:
    """A flow record as the dashboard shows it (the flow JSON itself left out); an offloaded
    exported item has its ``download`` path (the item's serialized bytes)."""
    data = record_dict(record)
    data.pop("flow_json", None)
    data["items"] = sum(node.items_sent for node in record.nodes)
    data["exports_kept"] = len(record.exports)
    data["exports"] = data["exports"][:EXPORTS_SHOWN] if with_exports else []
    numbers: dict[str, int] = {}
    for shown in data["exports"]:  # the item's number within its export
        number = numbers[shown["export"]] = numbers.get(shown["export"], -1) + 1
        value = shown["value"]
        if isinstance(value, dict) and isinstance(value.get(OFFLOADED), dict):
            export = urllib.parse.quote(shown["export"], safe="")
            shown["download"] = f"/api/flows/{record.id}/exports/{export}/{number}"
    return data


def failure_view(report: FailureReport) -> dict[str, Any]:
    """A failure report as JSON."""
    return failure_dict(report)


def flow_view(record: pb.FlowRecord, catalogue: Mapping[str, Progdef]) -> dict[str, Any]:
    """A flow's record and its graph: nodes, edges labelled with typenames, consts."""
    data = record_view(record)
    data["graph"] = _graph(record, catalogue)
    return data


def _graph(record: pb.FlowRecord, catalogue: Mapping[str, Progdef]) -> dict[str, Any]:
    nodes = {n.node: {"name": n.node, "progdef": n.progdef} for n in record.nodes}
    try:
        flow = json.loads(record.flow_json) if record.flow_json else {}
    except ValueError:
        flow = {}
    types = _port_types(record.flow_json, catalogue)
    edges = []
    for edge in flow.get("edges", []):
        source, target = str(edge.get("from", "")), str(edge.get("to", ""))
        edges.append(
            {
                "from": source.partition(".")[0],
                "to": target.partition(".")[0],
                "label": f"{source} → {target}",
                "source": source,
                "target": target,
                "typename": types.get(("out", source), ""),
            }
        )
    consts = [
        {"to": str(c.get("to", "")), "values": c.get("values", [])} for c in flow.get("consts", [])
    ]
    return {"nodes": list(nodes.values()), "edges": edges, "consts": consts}


def _port_types(flow_json: str, catalogue: Mapping[str, Progdef]) -> dict[tuple[str, str], str]:
    """Output ``node.port`` -> typename, type variables bound when the flow still checks."""
    if not flow_json:
        return {}
    from scheduler.flow.check import check_flow
    from scheduler.flow.parse import parse_flow

    try:
        checked = check_flow(parse_flow(flow_json), catalogue)
    except DagyoError:
        return {}
    return {
        (side, f"{node}.{port}"): typename
        for (node, side, port), typename in checked.port_types.items()
        if not is_type_variable(typename)
    }


def catalogue_view(catalogue: Mapping[str, Progdef]) -> dict[str, Any]:
    """The progdefs with their ports, and every typename their ports use with its fields and
    its doc comment."""
    from executor.core.types import STANDARD_TYPES, describe

    typenames = set(STANDARD_TYPES)
    progdefs = []
    for progdef in catalogue.values():
        progdefs.append(
            {
                "name": progdef.name,
                "description": progdef.description,
                "inputs": dict(progdef.inputs),
                "outputs": dict(progdef.outputs),
            }
        )
        typenames.update(
            t for t in (*progdef.inputs.values(), *progdef.outputs.values()) if "." in t
        )
    from scheduler.flow.typedocs import describe_type

    types = []
    for typename in sorted(typenames):
        try:
            fields = describe(typename)
            doc = describe_type(typename, catalogue)["doc"]  # the comment in its .proto
        except DagyoError:
            fields, doc = "", ""
        types.append({"typename": typename, "fields": fields, "doc": doc})
    return {"progdefs": progdefs, "types": types}
