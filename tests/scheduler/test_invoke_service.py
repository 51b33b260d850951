"""The gRPC Invoke against the fake executor, where a test must hold a job running.

Apart from tests/scheduler/test_invoke.py: its module-wide cluster runs a scheduler on the
same vhost, which would take some of the fake executor's events (one scheduler per vhost).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from executor.core.errors import SchedulerRefused
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import TICK, FakeExecutor, mailboxes, texts


@pytest.fixture
def tenanted(
    settings: SchedulerSettings, catalogue: Path, tmp_path: Path, broker_url: str
) -> Iterator[tuple[Scheduler, FakeExecutor]]:
    write_progdef(catalogue / "tick", {**TICK, "outputs": {"ticks": "dagyo.types.Text"}}, "t1")
    tokens = tmp_path / "tokens.json"
    principal = Principal("team-a", "user", Quotas(max_running_flows=1))
    tokens.write_text(tokens_json({token_digest("alice"): principal}))
    fake = FakeExecutor(broker_url, mailboxes(catalogue)).start()
    scheduler = Scheduler(dataclasses.replace(settings, tokens_path=str(tokens)))
    scheduler.start()
    yield scheduler, fake
    scheduler.stop()
    fake.close()


def test_invoke_is_held_to_quotas_and_runs_a_progdef_without_inputs(
    tenanted: tuple[Scheduler, FakeExecutor],
) -> None:
    scheduler, fake = tenanted
    with SchedulerClient(scheduler.address, token="alice") as client:
        stream = client.invoke("tick", [])
        first = next(stream)
        (job,) = fake.next_jobs(1).values()
        assert (job.flow_id, job.progdef) == (first.flow_id, "tick")
        with pytest.raises(SchedulerRefused, match="quota max_running_flows is 1"):
            next(client.invoke("relay", ['text="x"']))
        fake.start_job(job)
        fake.send(job, "ticks", texts("t0", "t1"), seq=0, end=True)
        fake.end_job(job, {"ticks": 2})
        rest = list(stream)
    assert [json.loads(e.output.value_json) for e in rest[:-1]] == [{"text": "t0"}, {"text": "t1"}]
    assert rest[-1].end.tenant == "team-a"


def test_invoke_without_a_token_is_refused(tenanted: tuple[Scheduler, FakeExecutor]) -> None:
    scheduler, _ = tenanted
    channel = grpc.insecure_channel(scheduler.address)
    stub = scheduler_pb2_grpc.SchedulerStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Invoke(pb.InvokeRequest(progdef="tick"), timeout=20))
    channel.close()
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
