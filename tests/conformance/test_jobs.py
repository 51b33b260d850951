"""A job's life on an executor (docs/protocol.md, Jobs; Failures, stop, heartbeats):
started and ended events, a panic's report, a stop, heartbeats, refused jobs.

Every case runs jobs of the ``relay`` progdef, which passes each item on and panics on the
item ``panic`` (raised in its function ``conformance_panic``).
"""

from __future__ import annotations

import pytest

from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC
from executor.pb.dagyo.v1.job_pb2 import Input, Job, Output
from tests.conformance.conftest import StartExecutor
from tests.conformance.executors import RunningExecutor
from tests.conformance.wire import (
    TEXT,
    Stream,
    Wire,
    const_input,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
    text_of,
    texts,
)


@pytest.fixture(scope="module")
def relay(start: StartExecutor) -> RunningExecutor:
    return start("relay", DAGYO_MAX_JOBS="8")


def relay_job(
    wire: Wire, relay: RunningExecutor, flow_id: str, source: Input, **fields: str
) -> tuple[Job, Stream]:
    """A relay job reading ``source``; ``fields`` override the descriptor's (progdef, …)."""
    [out] = fan_out(wire, flow_id, ["down.text"])
    output = Output(typename=TEXT, queues=[out.queue], token=out.token)
    job = job_for(relay.progdef, relay.version, flow_id, "relay", {"text": source}, {})
    job.outputs["text"].CopyFrom(output)
    for name, value in fields.items():
        setattr(job, name, value)
    return job, out


def test_a_panic_is_reported_with_the_authors_traceback(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    job, _ = relay_job(wire, relay, flow_id, const_input(texts("a", "panic", "b")))
    wire.publish_job(relay.mailbox, job)

    ended = wire.ended(flow_id, "relay")
    [report] = wire.failures_before_end(flow_id, "relay")
    assert report.kind == FAILURE_KIND_PANIC
    assert (report.flow_id, report.node, report.progdef) == (flow_id, "relay", "relay")
    assert report.executor == relay.executor_id
    assert "asked to panic" in report.error
    assert "conformance_panic" in report.traceback, report.traceback
    assert report.time > 0
    assert (ended.outcome, ended.reason) == ("panicked", report.error)


def test_a_stop_ends_the_flows_job_as_stopped(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    job, _ = relay_job(wire, relay, flow_id, input_from(source))
    wire.publish_job(relay.mailbox, job)
    wire.started(flow_id, "relay")
    wire.send(source.queue, source.frame(texts("a"), 0))  # it waits for more

    wire.stop(flow_id, "the conformance suite stopped it")
    ended = wire.ended(flow_id, "relay")
    assert ended.outcome == "stopped"
    assert flow_id in ended.reason and "the conformance suite stopped it" in ended.reason
    assert wire.failures_before_end(flow_id, "relay") == [], "a stop is no failure"


def test_a_job_of_a_stopped_flow_is_dropped_unrun(wire: Wire, relay: RunningExecutor) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    first, _ = relay_job(wire, relay, flow_id, input_from(source))
    wire.publish_job(relay.mailbox, first)
    wire.started(flow_id, "relay")
    wire.stop(flow_id, "stopped while a job of it still waits in the mailbox")
    assert wire.ended(flow_id, "relay").outcome == "stopped"  # the Stop was taken

    late, out = relay_job(wire, relay, flow_id, const_input(texts("a")))
    late.node = "late"
    wire.publish_job(relay.mailbox, late)
    # A job of another flow, published after it to the same mailbox, runs.
    other = new_flow_id()
    after, _ = relay_job(wire, relay, other, const_input(texts("b")))
    wire.publish_job(relay.mailbox, after)
    assert wire.ended(other, "relay").outcome == ""
    assert wire.depth(relay.mailbox) == 0, "the job of the stopped flow was acked"
    assert wire.depth(out.queue) == 0, "the job of the stopped flow sent nothing"
    assert not [e for e in wire.events("started") if e.job.node == "late"], "it never started"


@pytest.mark.parametrize("field", ["version", "progdef"])
def test_a_job_for_another_progdef_or_version_is_refused(
    wire: Wire, relay: RunningExecutor, field: str
) -> None:
    flow_id = new_flow_id()
    wrong = {"version": "0123456789abcdef", "progdef": "not_relay"}[field]
    job, out = relay_job(wire, relay, flow_id, const_input(texts("a")), **{field: wrong})
    wire.publish_job(relay.mailbox, job)

    ended = wire.ended(flow_id, "relay")
    [report] = wire.failures_before_end(flow_id, "relay")
    assert ended.outcome == "refused"
    assert report.kind == FAILURE_KIND_PANIC
    assert ended.reason == report.error
    # The refusal names what the job is for and what the executor serves.
    assert wrong in report.error and relay.version in report.error, report.error
    assert wire.depth(out.queue) == 0, "a refused job runs nothing"
    assert wire.depth(relay.mailbox) == 0, "a refused job is acked"


def test_heartbeats_name_the_running_jobs_with_their_counts(
    wire: Wire, relay: RunningExecutor
) -> None:
    flow_id = new_flow_id()
    source = stream_into(wire, flow_id, "relay", "text")
    job, out = relay_job(wire, relay, flow_id, input_from(source))
    wire.publish_job(relay.mailbox, job)
    wire.send(source.queue, source.frame(texts("a", "b", "c"), 0))

    def names_job(beat: object) -> bool:
        jobs = [j for j in beat.jobs if (j.flow_id, j.node) == (flow_id, "relay")]  # type: ignore[attr-defined]
        return bool(jobs) and dict(jobs[0].items_received) == {"text": 3}

    beat = wire.heartbeat(names_job, "a heartbeat naming the job with 3 items received")
    assert beat.executor == relay.executor_id
    assert (beat.progdef, beat.version, beat.mailbox) == ("relay", relay.version, relay.mailbox)
    assert beat.slots == 8, "slots: its DAGYO_MAX_JOBS"
    assert not beat.draining

    wire.send(source.queue, source.frame([], 1, end=True))
    assert text_of(wire.frames(out.queue)) == ["a", "b", "c"]
    wire.ended(flow_id, "relay")
    wire.heartbeat(
        lambda beat: (
            beat.executor == relay.executor_id and all(j.flow_id != flow_id for j in beat.jobs)
        ),
        "a heartbeat no longer naming the ended job",
    )
