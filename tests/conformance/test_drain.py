"""Drain (docs/protocol.md; DESIGN.md): on SIGTERM an executor takes no new job, lets its
running jobs end, says goodbye and exits 0; jobs it did not start stay in the mailbox.

An executor of ``relay`` with one slot, started for this case alone.
"""

from __future__ import annotations

import signal

from executor.pb.dagyo.v1.events_pb2 import Event
from executor.pb.dagyo.v1.job_pb2 import Output
from tests.conformance.conftest import StartExecutor
from tests.conformance.wire import (
    TEXT,
    WAIT_S,
    Wire,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
    text_of,
    texts,
)


def test_sigterm_drains_running_jobs_and_exits_0(wire: Wire, start: StartExecutor) -> None:
    relay = start("relay", DAGYO_MAX_JOBS="1", DAGYO_DRAIN_GRACE_S="60")
    running, waiting = new_flow_id(), new_flow_id()
    streams = {}
    for flow_id in (running, waiting):
        source = stream_into(wire, flow_id, "relay", "text")
        [out] = fan_out(wire, flow_id, ["down.text"])
        job = job_for(relay.progdef, relay.version, flow_id, "relay", {}, {})
        job.inputs["text"].CopyFrom(input_from(source))
        job.outputs["text"].CopyFrom(Output(typename=TEXT, queues=[out.queue], token=out.token))
        wire.publish_job(relay.mailbox, job)
        streams[flow_id] = (source, out)
        if flow_id == running:
            wire.started(running, "relay")
    source, out = streams[running]
    wire.send(source.queue, source.frame(texts("a"), 0))

    relay.process.send_signal(signal.SIGTERM)
    wire.heartbeat(
        lambda beat: beat.executor == relay.executor_id and beat.draining,
        "a heartbeat saying the executor drains",
    )
    assert relay.process.poll() is None, "a draining executor waits for its running job"
    wire.send(source.queue, source.frame(texts("b"), 1, end=True))

    assert relay.process.wait(timeout=WAIT_S) == 0
    assert text_of(wire.frames(out.queue)) == ["a", "b"]
    assert wire.ended(running, "relay").outcome == ""
    goodbye = wire.wait_heard(
        lambda h: (
            isinstance(h.message, Event)
            and h.message.WhichOneof("kind") == "goodbye"
            and h.message.goodbye.executor == relay.executor_id
        ),
        "its goodbye",
    )
    assert isinstance(goodbye.message, Event) and goodbye.message.goodbye.mailbox == relay.mailbox
    assert wire.depth(relay.mailbox) == 1, "the job it did not start is back in the mailbox"
    assert not [e for e in wire.events("started") if e.job.flow_id == waiting]
