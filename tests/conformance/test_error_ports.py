"""Error ports (docs/protocol.md, Streams): an item the code fails on goes to the
progdef's error port as a dagyo.types.Error, an ordinary stream; the job goes on and ends.

The ``strict`` progdef passes items on and fails (in its function ``conformance_reject``)
on an item starting with ``bad``.
"""

from __future__ import annotations

from executor.pb.dagyo.types_pb2 import Error, Text
from tests.conformance.conftest import StartExecutor
from tests.conformance.wire import (
    Wire,
    const_input,
    fan_out,
    job_for,
    new_flow_id,
    output_to,
    text_of,
    texts,
)


def test_failed_items_go_to_the_error_port_and_the_job_ends(
    wire: Wire, start: StartExecutor
) -> None:
    strict = start("strict", DAGYO_MAX_JOBS="8")
    flow_id = new_flow_id()
    text = fan_out(wire, flow_id, ["down.text"])
    errors = fan_out(wire, flow_id, ["check.errors"], "dagyo.types.Error")
    job = job_for(
        strict.progdef,
        strict.version,
        flow_id,
        "strict",
        {"text": const_input(texts("ok1", "bad1", "ok2"))},
        {"text": output_to(text), "errors": output_to(errors)},
    )
    wire.publish_job(strict.mailbox, job)

    assert text_of(wire.frames(text[0].queue)) == ["ok1", "ok2"]
    frames = wire.frames(errors[0].queue)
    assert {f.typename for f in frames} == {"dagyo.types.Error"}
    assert {f.token for f in frames} == {errors[0].token}
    [error] = [Error.FromString(item) for frame in frames for item in frame.items]
    assert (error.node, error.progdef, error.typename) == ("strict", "strict", "dagyo.types.Text")
    assert Text.FromString(error.item).text == "bad1"
    assert "rejected bad1" in error.error
    assert "conformance_reject" in error.traceback, error.traceback
    assert error.attempts == 1
    assert error.time > 0

    ended = wire.ended(flow_id, "strict")
    assert ended.outcome == ""
    assert dict(ended.items_sent) == {"text": 2, "errors": 1}
    assert wire.failures_before_end(flow_id, "strict") == [], "a failed item is no panic"
