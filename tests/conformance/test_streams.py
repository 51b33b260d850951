"""Streams (docs/protocol.md, Streams): frames, end-of-stream, order, fan-out, a full stream.

Every case runs one job of the ``relay`` progdef, which passes each item on unchanged.
"""

from __future__ import annotations

import threading

import pytest

from executor.pb.dagyo.types_pb2 import Text
from executor.pb.dagyo.v1.job_pb2 import Input, Output
from scheduler.service.recording import Recording
from scheduler.service.replay import Replayer
from tests.conformance.conftest import StartExecutor
from tests.conformance.executors import RunningExecutor
from tests.conformance.wire import (
    TEXT,
    WAIT_S,
    Stream,
    Wire,
    assert_stream,
    const_input,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
    text_of,
    texts,
)
from tests.waiting import eventually


@pytest.fixture(scope="module")
def relay(start: StartExecutor) -> RunningExecutor:
    return start("relay", DAGYO_MAX_JOBS="8")


def run_relay(
    wire: Wire, relay: RunningExecutor, flow_id: str, source: Input, targets: list[str]
) -> list[Stream]:
    """Publish a relay job reading ``source`` and sending to ``targets``; its output's
    streams."""
    outputs = fan_out(wire, flow_id, targets)
    output = Output(typename=TEXT, queues=[s.queue for s in outputs], token=outputs[0].token)
    job = job_for(
        relay.progdef, relay.version, flow_id, "relay", {"text": source}, {"text": output}
    )
    wire.publish_job(relay.mailbox, job)
    return outputs


def test_consts_are_sent_in_order_then_end_of_stream(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    [out] = run_relay(wire, relay, flow_id, const_input(texts("a", "b", "c")), ["down.text"])
    ended = wire.ended(flow_id, "relay")
    # Its end-of-stream was confirmed before its ended event: it is in the queue already.
    frames = wire.frames(out.queue, already=True)
    assert text_of(frames) == ["a", "b", "c"]
    assert_stream(frames, out.token)
    assert ended.outcome == ""
    assert ended.executor == relay.executor_id
    assert dict(ended.items_received) == {"text": 3}
    assert dict(ended.items_sent) == {"text": 3}
    wire.started(flow_id, "relay")


def test_a_stream_is_read_and_passed_on_in_order(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    [out] = run_relay(wire, relay, flow_id, input_from(source), ["down.text"])
    values = [f"item-{i}" for i in range(100)]
    for seq in range(5):
        wire.send(source.queue, source.frame(texts(*values[seq * 20 : seq * 20 + 20]), seq))
    wire.send(source.queue, source.frame([], 5, end=True))
    frames = wire.frames(out.queue)
    assert text_of(frames) == values
    assert_stream(frames, out.token)
    ended = wire.ended(flow_id, "relay")
    assert (ended.outcome, dict(ended.items_received)) == ("", {"text": 100})


def test_an_output_feeding_two_inputs_sends_every_frame_to_both(
    wire: Wire, relay: RunningExecutor
) -> None:
    flow_id = new_flow_id()
    items = const_input(texts(*(f"x{i}" for i in range(10))))
    left, right = run_relay(wire, relay, flow_id, items, ["left.text", "right.text"])
    for stream in (left, right):
        frames = wire.frames(stream.queue)
        assert text_of(frames) == [f"x{i}" for i in range(10)], stream.queue
        assert_stream(frames, left.token)
    assert wire.ended(flow_id, "relay").outcome == ""


def test_a_frame_delivered_again_is_dropped(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    first = source.frame(texts("a"), 0)
    for body in (first, first, source.frame(texts("b"), 1, end=True)):
        wire.send(source.queue, body)
    [out] = run_relay(wire, relay, flow_id, input_from(source), ["down.text"])
    assert text_of(wire.frames(out.queue)) == ["a", "b"]
    assert wire.ended(flow_id, "relay").outcome == ""


def test_a_full_stream_holds_its_producer_back_and_loses_nothing(
    wire: Wire, relay: RunningExecutor
) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    [out] = run_relay(wire, relay, flow_id, input_from(source), ["down.text"])
    # Items of 140 000 bytes: a producer flushes a frame once it holds 128 KiB (131 072
    # bytes), so each is a frame of its own, and 30 of them are more than a stream holds.
    values = [f"{i:03d}" + "x" * 140_000 for i in range(30)]
    for seq, value in enumerate(values):
        wire.send(source.queue, source.frame(texts(value), seq))
    wire.send(source.queue, source.frame([], len(values), end=True))

    eventually(
        lambda: wire.depth(out.queue) == 16, WAIT_S, what="the output stream to fill (16 frames)"
    )
    wire.heartbeat(
        lambda beat: any(job.flow_id == flow_id and job.blocked_s > 0 for job in beat.jobs),
        "a heartbeat saying the job waits on its full output",
    )
    assert wire.depth(out.queue) == 16, "a full stream holds no more than its bound"
    assert not [e for e in wire.events("ended") if e.job.flow_id == flow_id]

    frames = wire.frames(out.queue)
    assert [Text.FromString(i).text[:3] for f in frames for i in f.items] == [v[:3] for v in values]
    assert_stream(frames, out.token)
    assert wire.ended(flow_id, "relay").outcome == ""


def test_a_stream_replayed_from_the_cache_is_read_as_its_producer_sent_it(
    wire: Wire, relay: RunningExecutor
) -> None:
    # A cached node's stream comes from the scheduler (docs/protocol.md, Cached nodes): the
    # same frames, seq, typename and token, held back by a full stream as any producer.
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    [out] = run_relay(wire, relay, flow_id, input_from(source), ["down.text"])
    values = [f"{i:03d}" + "x" * 140_000 for i in range(30)]
    recording = Recording()
    recording.add(texts(*values), limit=1 << 30, room=1 << 30)
    replayed = Output(typename=TEXT, queues=[source.queue], token=source.token)
    replayer = Replayer(wire.url)
    sent: list[int] = []
    sender = threading.Thread(
        target=lambda: sent.append(
            replayer.send(replayed, b"".join(recording.chunks), stop=threading.Event())
        )
    )
    try:
        sender.start()
        frames = wire.frames(out.queue)
        sender.join(WAIT_S)
    finally:
        replayer.close()
    assert sent == [30]
    assert [Text.FromString(i).text[:3] for f in frames for i in f.items] == [v[:3] for v in values]
    assert_stream(frames, out.token)
    assert wire.ended(flow_id, "relay").outcome == ""
