"""What a consumer checks of every frame (docs/protocol.md, Streams, Integrity): a frame
that is malformed, forged, of another typename, out of its place in the stream or past the
bounds panics the job naming the edge; its failure report goes before its ended event.

Each case publishes the stream's frames first, then a ``relay`` job reading it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from executor.core.constants import FRAME_MAX_ITEMS
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC
from executor.pb.dagyo.v1.job_pb2 import Output
from tests.conformance.conftest import StartExecutor
from tests.conformance.executors import RunningExecutor
from tests.conformance.wire import (
    TEXT,
    Stream,
    Wire,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
    texts,
)

EDGE = "up.text"

# Each case: the frames of the stream, made from it.
BadStream = Callable[[Stream], list[bytes]]
CASES: dict[str, BadStream] = {
    "a gap in seq": lambda s: [s.frame(texts("a"), 0), s.frame(texts("c"), 2, end=True)],
    "a first frame that is not seq 0": lambda s: [s.frame(texts("a"), 1, end=True)],
    "another frame under a seq taken": lambda s: [
        s.frame(texts("a"), 0),
        s.frame(texts("b"), 0),
        s.frame(texts("c"), 1, end=True),
    ],
    "another typename": lambda s: [s.frame(texts("a"), 0, end=True, typename="dagyo.types.Bytes")],
    "no typename": lambda s: [s.frame(texts("a"), 0, end=True, typename="")],
    "a forged producer token": lambda s: [s.frame(texts("a"), 0, end=True, token="f" * 32)],
    "no producer token": lambda s: [s.frame(texts("a"), 0, end=True, token="")],
    "a body that is no frame": lambda s: [b"\xff\xff\xff\xff"],
    "an item that is no Text": lambda s: [s.frame([b"\xff\xff"], 0, end=True)],
    "more items than a frame may hold": lambda s: [
        s.frame([b""] * (FRAME_MAX_ITEMS + 1), 0, end=True)
    ],
}


@pytest.fixture(scope="module")
def relay(start: StartExecutor) -> RunningExecutor:
    return start("relay", DAGYO_MAX_JOBS="8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_frame_panics_the_job_naming_the_edge(
    wire: Wire, relay: RunningExecutor, case: str
) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    for body in CASES[case](source):
        wire.send(source.queue, body)
    [out] = fan_out(wire, flow_id, ["down.text"])
    output = Output(typename=TEXT, queues=[out.queue], token=out.token)
    job = job_for(
        relay.progdef,
        relay.version,
        flow_id,
        "relay",
        {"text": input_from(source, EDGE)},
        {"text": output},
    )
    wire.publish_job(relay.mailbox, job)

    ended = wire.ended(flow_id, "relay")
    assert ended.outcome == "panicked", f"{case}: {ended}"
    [report] = wire.failures_before_end(flow_id, "relay")
    assert report.kind == FAILURE_KIND_PANIC
    assert (report.progdef, report.executor) == ("relay", relay.executor_id)
    assert EDGE in report.error, f"the panic names the edge {EDGE}: {report.error!r}"
    assert ended.reason == report.error
