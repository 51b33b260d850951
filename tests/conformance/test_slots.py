"""Job slots (docs/protocol.md, Jobs): an executor takes at most DAGYO_MAX_JOBS jobs at
once (prefetch = free slots); the rest wait in the mailbox until a slot frees.

An executor of ``relay`` with 2 slots; each job waits on a stream until the suite ends it.
"""

from __future__ import annotations

import pytest

from executor.pb.dagyo.v1.job_pb2 import Output
from tests.conformance.conftest import StartExecutor
from tests.conformance.executors import RunningExecutor
from tests.conformance.wire import (
    TEXT,
    WAIT_S,
    Stream,
    Wire,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
)
from tests.waiting import eventually


@pytest.fixture(scope="module")
def relay(start: StartExecutor) -> RunningExecutor:
    return start("relay", DAGYO_MAX_JOBS="2")


def waiting_job(wire: Wire, relay: RunningExecutor, flow_id: str) -> Stream:
    """Publish a relay job that waits on its input; the input's stream."""
    source = stream_into(wire, flow_id, "relay", "text")
    [out] = fan_out(wire, flow_id, ["down.text"])
    output = Output(typename=TEXT, queues=[out.queue], token=out.token)
    job = job_for(relay.progdef, relay.version, flow_id, "relay", {"text": input_from(source)}, {})
    job.outputs["text"].CopyFrom(output)
    wire.publish_job(relay.mailbox, job)
    return source


def test_jobs_past_the_free_slots_wait_in_the_mailbox(wire: Wire, relay: RunningExecutor) -> None:
    flows = [new_flow_id() for _ in range(3)]
    sources = {flow_id: waiting_job(wire, relay, flow_id) for flow_id in flows}

    def started() -> set[str]:
        return {e.job.flow_id for e in wire.events("started")} & set(flows)

    eventually(lambda: len(started()) >= 2, WAIT_S, what="two jobs to start")
    # A heartbeat sent after both started names them, and only them: the third job was
    # not started. (It may be held unacked rather than ready in the mailbox: the broker
    # may deliver it between the ack that started a job and the cancel of the consumer.)
    beat = wire.heartbeat(
        lambda beat: (
            beat.executor == relay.executor_id and {j.flow_id for j in beat.jobs} >= started()
        ),
        "a heartbeat naming both running jobs",
    )
    assert len(started()) == 2, "a job started past the executor's 2 slots"
    assert len(beat.jobs) == 2 and beat.slots == 2
    [waiting] = set(flows) - started()

    first = sorted(started())[0]
    source = sources[first]
    wire.send(source.queue, source.frame([], 0, end=True))
    assert wire.ended(first, "relay").outcome == ""
    wire.started(waiting, "relay")  # the freed slot takes it
    assert wire.depth(relay.mailbox) == 0
    for flow_id in set(flows) - {first}:
        source = sources[flow_id]
        wire.send(source.queue, source.frame([], 0, end=True))
        assert wire.ended(flow_id, "relay").outcome == ""
