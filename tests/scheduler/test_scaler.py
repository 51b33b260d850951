"""KEDA's external scaler as KEDA calls it: the demand of a progdef in job slots.

A real scheduler on the real broker, the fake executor taking and starting jobs, and a
client generated from KEDA's externalscaler.proto.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.externalscaler import externalscaler_pb2 as keda
from scheduler.pb.externalscaler import externalscaler_pb2_grpc
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import (
    EMIT,
    FLOW,
    RELAY,
    WAIT_S,
    Client,
    FakeExecutor,
    mailboxes,
)
from tests.waiting import eventually

MAX_JOBS = 4


@pytest.fixture
def scaled(tmp_path: Path, catalogue: Path) -> Path:
    """emit with ``max_jobs`` 4 and relay, in versions no other test uses."""
    folder = tmp_path / "scaled"
    version = (catalogue / "emit" / "VERSION").read_text()
    write_progdef(folder / "emit", {**EMIT, "scaling": {"max_jobs": MAX_JOBS}}, version)
    write_progdef(folder / "relay", RELAY, version)
    return folder


@pytest.fixture
def scheduler(settings: SchedulerSettings, scaled: Path) -> Iterator[Client]:
    started = Client(
        dataclasses.replace(
            settings, progdefs=scaled, require_consumers=False, heartbeat_timeout_s=60.0
        )
    )
    yield started
    started.close()


def ref(progdef: str) -> keda.ScaledObjectRef:
    return keda.ScaledObjectRef(name="so", namespace="ns", scalerMetadata={"progdef": progdef})


def demand(stub: externalscaler_pb2_grpc.ExternalScalerStub, progdef: str) -> int:
    request = keda.GetMetricsRequest(scaledObjectRef=ref(progdef), metricName="s0-dagyo")
    (value,) = stub.GetMetrics(request, timeout=WAIT_S).metricValues
    assert value.metricName == "s0-dagyo"
    assert value.metricValue == value.metricValueFloat
    return int(value.metricValue)


def active(stub: externalscaler_pb2_grpc.ExternalScalerStub, progdef: str) -> bool:
    return bool(stub.IsActive(ref(progdef), timeout=WAIT_S).result)


def until(check: Callable[[], object], expected: object) -> None:
    eventually(check, WAIT_S, until=lambda got: got == expected, what=f"{expected!r}")


def take(fake: FakeExecutor, count: int) -> list[Job]:
    return [fake.jobs.get(timeout=WAIT_S) for _ in range(count)]


def submit(client: Client, count: int) -> list[str]:
    return [client.submit(FLOW) for _ in range(count)]


def test_the_metric_is_jobs_waiting_plus_jobs_running(
    scheduler: Client, broker_url: str, scaled: Path
) -> None:
    stub = externalscaler_pb2_grpc.ExternalScalerStub(scheduler.channel)
    (spec,) = stub.GetMetricSpec(ref("emit"), timeout=WAIT_S).metricSpecs
    assert (spec.targetSize, spec.targetSizeFloat) == (MAX_JOBS, MAX_JOBS)
    assert spec.metricName.startswith("dagyo-jobs-emit-")
    assert (demand(stub, "emit"), active(stub, "emit")) == (0, False)

    busy = FakeExecutor(broker_url, mailboxes(scaled)).start()
    idle = None
    try:
        first = submit(scheduler, 2)
        jobs = take(busy, 4)
        for job in jobs:
            if job.node == "a":
                busy.start_job(job)
        for flow_id in first:
            until(lambda f=flow_id: scheduler.get(f).nodes[0].state, pb.NODE_STATE_RUNNING)
        # The busy executor takes no more: what is submitted now waits in the mailboxes.
        busy._do(lambda channel: channel.stop_consuming())
        submit(scheduler, 3)
        until(lambda: demand(stub, "emit"), 2 + 3)  # 2 running, 3 waiting
        until(lambda: demand(stub, "relay"), 3)  # 2 taken but not started, 3 waiting
        assert active(stub, "emit") and active(stub, "relay")
        stream = stub.StreamIsActive(ref("emit"), timeout=WAIT_S)
        assert next(stream).result is True
        stream.cancel()

        for job in jobs:
            if job.node == "a":
                busy.end_job(job, {"items": 0})
        idle = FakeExecutor(broker_url, mailboxes(scaled)).start()
        take(idle, 6)  # taken, never started
        until(lambda: demand(stub, "emit"), 0)
        assert (active(stub, "emit"), demand(stub, "relay"), active(stub, "relay")) == (
            False,
            0,
            False,
        )
    finally:
        busy.close(delete_mailboxes=False)
        if idle is not None:
            idle.close(delete_mailboxes=False)

    # Scaled to zero: the stream says inactive, then active as soon as a job is published.
    stream = stub.StreamIsActive(ref("emit"), timeout=WAIT_S)
    assert next(stream).result is False
    submit(scheduler, 1)
    assert next(stream).result is True
    stream.cancel()


def test_an_unknown_progdef_is_not_found_and_the_catalogue_not_told(scheduler: Client) -> None:
    # The scaler answers without a token: its errors name nothing it was not asked.
    stub = externalscaler_pb2_grpc.ExternalScalerStub(scheduler.channel)
    long = "n" * 10_000
    for name, shown in (("nope", "nope"), (long, "n" * 100 + "…")):
        calls = [
            lambda ref: stub.GetMetricSpec(ref, timeout=WAIT_S),
            lambda ref: stub.IsActive(ref, timeout=WAIT_S),
            lambda ref: stub.GetMetrics(
                keda.GetMetricsRequest(scaledObjectRef=ref), timeout=WAIT_S
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call(ref(name))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            details = caught.value.details()
            assert details.startswith(f"no progdef {shown} in the scheduler's catalogue")
            assert "emit" not in details and "relay" not in details, details
    with pytest.raises(grpc.RpcError) as caught:
        stub.IsActive(keda.ScaledObjectRef(name="so"), timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "names no progdef" in str(caught.value.details())


def test_the_scaler_needs_no_token(
    settings: SchedulerSettings, scaled: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        tokens_json(
            {token_digest("s3cret"): Principal(tenant="team-a", role="user", quotas=Quotas())}
        )
    )
    client = Client(dataclasses.replace(settings, progdefs=scaled, tokens_path=str(tokens)))
    try:
        stub = externalscaler_pb2_grpc.ExternalScalerStub(client.channel)
        assert (demand(stub, "emit"), active(stub, "emit")) == (0, False)
        with pytest.raises(grpc.RpcError) as caught:
            client.get("0123456789ab")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_a_progdef_of_one_job_per_pod_is_scaled_one_pod_per_job(
    settings: SchedulerSettings, tmp_path: Path, catalogue: Path
) -> None:
    folder = tmp_path / "one-job"
    version = (catalogue / "emit" / "VERSION").read_text()
    write_progdef(folder / "emit", {**EMIT, "scaling": {"mode": "job"}}, version)
    write_progdef(folder / "relay", RELAY, version)
    client = Client(dataclasses.replace(settings, progdefs=folder, require_consumers=False))
    try:
        stub = externalscaler_pb2_grpc.ExternalScalerStub(client.channel)
        (spec,) = stub.GetMetricSpec(ref("emit"), timeout=WAIT_S).metricSpecs
        assert (spec.targetSize, spec.targetSizeFloat) == (1, 1)
        submit(client, 2)
        until(lambda: demand(stub, "emit"), 2)  # two jobs waiting: two pods wanted
    finally:
        client.close()
