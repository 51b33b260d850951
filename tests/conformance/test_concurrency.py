"""Items in flight (docs/protocol.md, The executor process): a function progdef with
``"concurrency": 8`` may run several items of a job at once, but its frames are as one at a
time: results and Errors in input order, seq without a gap, one end-of-stream.

The ``pool`` progdef waits, per item, 3 ms times the last digit of its text (so later items
finish first), then passes it on, or fails (in ``conformance_reject``) on an item starting
with ``bad``.
"""

from __future__ import annotations

from executor.pb.dagyo.types_pb2 import Error, Text
from tests.conformance.conftest import StartExecutor
from tests.conformance.wire import (
    Wire,
    assert_stream,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    output_to,
    stream_into,
    text_of,
    texts,
)


def test_items_in_flight_are_sent_in_input_order_errors_too(
    wire: Wire, start: StartExecutor
) -> None:
    pool = start("pool", DAGYO_MAX_JOBS="8")
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "pool", "text")
    text = fan_out(wire, flow_id, ["down.text"])
    errors = fan_out(wire, flow_id, ["check.errors"], "dagyo.types.Error")
    job = job_for(
        pool.progdef,
        pool.version,
        flow_id,
        "pool",
        {"text": input_from(source)},
        {"text": output_to(text), "errors": output_to(errors)},
    )
    wire.publish_job(pool.mailbox, job)
    values = [f"bad-{i}" if i % 11 == 5 else f"item-{9 - i % 10}{i}" for i in range(120)]
    for seq in range(4):
        wire.send(source.queue, source.frame(texts(*values[seq * 30 : seq * 30 + 30]), seq))
    wire.send(source.queue, source.frame([], 4, end=True))

    good = [v for v in values if not v.startswith("bad")]
    frames = wire.frames(text[0].queue)
    assert text_of(frames) == good
    assert_stream(frames, text[0].token)
    bad = [v for v in values if v.startswith("bad")]
    failed = [Error.FromString(i) for frame in wire.frames(errors[0].queue) for i in frame.items]
    assert [Text.FromString(error.item).text for error in failed] == bad
    assert all("conformance_reject" in error.traceback for error in failed)
    ended = wire.ended(flow_id, "pool")
    assert ended.outcome == ""
    assert dict(ended.items_sent) == {"text": len(good), "errors": len(bad)}
