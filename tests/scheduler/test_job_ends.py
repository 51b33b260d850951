"""A flow never stays running for ever: however its jobs end (a report with a reason, a
Stop the scheduler did not send, no report at all, an export left without its end), the
scheduler ends the flow within a bounded time, naming why.

The fixtures are in conftest.py, the fake executor in fake_executor.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from executor.core.constants import JOB_BROKER, JOB_STOPPED
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_LOST,
    FAILURE_KIND_PANIC,
    FAILURE_KIND_STOPPED,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.config import SchedulerSettings
from tests.scheduler.fake_executor import (
    Client,
    FakeExecutor,
    assert_no_queue_left,
    end_of,
    texts,
)


@pytest.fixture
def quick(settings: SchedulerSettings) -> Iterator[Client]:
    """A scheduler with a short heartbeat timeout: the bound these ends come within."""
    client = Client(dataclasses.replace(settings, heartbeat_timeout_s=1.5))
    yield client
    client.close()


def test_a_job_stopped_by_a_stop_the_scheduler_did_not_send_fails_the_flow_naming_it(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    reason = f"stopped by a Stop for flow {flow_id} (forged)"
    fake.end_job_as(jobs["a"], JOB_STOPPED, reason)
    end = end_of(client.watch(flow_id))
    assert end.state == pb.FLOW_STATE_FAILED
    assert (end.failure.kind, end.failure.node, end.failure.executor) == (
        FAILURE_KIND_STOPPED,
        "a",
        fake.id,
    )
    assert end.failure.error == (
        f"job a (progdef emit) on executor {fake.id} was stopped by a Stop for flow {flow_id} "
        "(forged), which this scheduler did not send: someone holding the broker's "
        "credentials published it (docs/security.md); resubmit the flow"
    )
    fake.stop_for(flow_id)
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_a_job_the_broker_failed_fails_the_flow_with_the_reason_reported(
    client: Client, fake: FakeExecutor
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["a"])
    reason = "lost the broker connection: the broker did not answer within 30.0 s"
    fake.end_job_as(jobs["a"], JOB_BROKER, reason)
    end = end_of(client.watch(flow_id))
    assert (end.state, end.failure.kind, end.failure.node) == (
        pb.FLOW_STATE_FAILED,
        FAILURE_KIND_BROKER,
        "a",
    )
    assert end.failure.error == reason


def test_a_job_its_live_executor_no_longer_runs_unreported_fails_the_flow_as_lost(
    quick: Client, fake: FakeExecutor
) -> None:
    flow_id = quick.submit()
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["a"])
    # The executor goes on heart-beating, but without the job and with no report of its end.
    fake.running.discard((jobs["a"].flow_id, "a"))
    end = end_of(quick.watch(flow_id))
    assert (end.state, end.failure.kind, end.failure.node, end.failure.executor) == (
        pb.FLOW_STATE_FAILED,
        FAILURE_KIND_LOST,
        "a",
        fake.id,
    )
    assert f"executor {fake.id} is alive but has not named job a (progdef emit)" in (
        end.failure.error
    )
    assert "no report of the job's end came" in end.failure.error


def test_an_export_left_without_its_end_after_every_job_ended_fails_the_flow(
    quick: Client, fake: FakeExecutor
) -> None:
    flow_id = quick.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    fake.send(jobs["a"], "items", texts("x0"), seq=0, end=True)
    fake.end_job(jobs["a"], {"items": 1})
    fake.send(jobs["b"], "text", texts("x0"), seq=0)  # and never an end-of-stream
    fake.end_job(jobs["b"], {"text": 1})
    end = end_of(quick.watch(flow_id))
    assert (end.state, end.failure.kind, end.failure.node) == (
        pb.FLOW_STATE_FAILED,
        FAILURE_KIND_PANIC,
        "b",
    )
    assert end.failure.error.startswith(
        "export out (from b.text): every job of the flow ended, but the export stream did "
        "not reach end-of-stream within 1.5 s (1 frames read, none of them the end)"
    )
