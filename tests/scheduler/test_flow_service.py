"""The flow service without gRPC: each use case takes a principal, answers records, and
refuses with a typed error whose message is the one users see (the gRPC, trigger and
dashboard adapters only translate it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import (
    BrokerError,
    FlowInvalid,
    FlowNotFound,
    PreconditionFailed,
    QuotaExceeded,
    RequestInvalid,
)
from executor.core.progdef import load_catalogue
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from scheduler.flow.plan import plan_flow
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal, Quotas
from scheduler.service.broker import Broker
from scheduler.service.catalogue import CatalogueCache
from scheduler.service.flowservice import FlowService
from scheduler.service.flowstate import FlowState
from scheduler.service.hooks import MetricsHook, Submission
from scheduler.service.lifecycle import Lifecycle
from scheduler.service.metrics import SchedulerMetrics
from scheduler.service.spares import Spares, queue_shape, shape_of
from scheduler.service.store import SqliteStore, StoreWriter
from scheduler.service.versions import Versions
from tests.conftest import EXAMPLES, PROGDEFS

HELLO = (EXAMPLES / "hello.json").read_text()
TEAM_A = Principal("team-a", "user", Quotas())
TEAM_B = Principal("team-b", "user", Quotas())
ADMIN = Principal("ops", "admin", Quotas())


class RecordingHook:
    """A submit hook that notes each submission and the error its start raised."""

    def __init__(self) -> None:
        self.seen: list[tuple[Submission, BaseException | None]] = []

    @contextmanager
    def around_submit(self, submission: Submission) -> Iterator[None]:
        try:
            yield
        except BaseException as e:
            self.seen.append((submission, e))
            raise
        self.seen.append((submission, None))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A flow service over a real store and catalogue, its broker never connected."""
    store = StoreWriter(SqliteStore(":memory:"))
    # Nothing listens there: the broker is away, as it is between reconnections.
    broker = Broker("amqp://guest:guest@127.0.0.1:1/")
    catalogue = CatalogueCache(PROGDEFS)
    metrics = SchedulerMetrics()
    lifecycle = Lifecycle(
        store, broker, metrics, heartbeat_timeout_s=15.0, export_cap_bytes=1 << 20
    )
    hook = RecordingHook()
    service = FlowService(
        catalogue=catalogue,
        store=store,
        lifecycle=lifecycle,
        spares=Spares(broker, store, idle_s=0),
        versions=Versions(
            catalogue=catalogue, broker=broker, lifecycle=lifecycle, unserved_mailbox_s=60.0
        ),
        broker=None,
        stopping=threading.Event(),
        hooks=[hook, MetricsHook(metrics)],
    )
    try:
        yield {"service": service, "store": store, "hook": hook, "metrics": metrics}
    finally:
        store.close()


def add_record(store: StoreWriter, flow_id: str, tenant: str) -> None:
    """A flow of ``tenant`` in the store, as a submit leaves it."""
    from scheduler.service.newflow import new_flow

    checked = check_flow(parse_flow(HELLO), load_catalogue(PROGDEFS))
    flow = new_flow(
        plan_flow(checked, flow_id=flow_id),
        name="hello",
        created=1.0,
        deadline=0.0,
        sources={"greetings": "hi.greeting"},
        tenant=tenant,
    )
    store.create(flow.record, flow.runtime)


def test_a_submit_past_a_quota_raises_quota_exceeded_naming_the_quota(
    parts: dict[str, Any],
) -> None:
    small = Principal("team-a", "user", Quotas(max_nodes=2))
    with pytest.raises(QuotaExceeded) as refused:
        parts["service"].submit(small, HELLO)
    assert str(refused.value) == "quota max_nodes is 2 for this token; the flow has 3 nodes"
    deadline = Principal("team-a", "user", Quotas(max_deadline_s=60))
    with pytest.raises(QuotaExceeded, match="quota max_deadline_s is 60 for this token; the flow "):
        parts["service"].submit(deadline, HELLO, deadline_s=61)
    assert parts["store"].running_count("team-a") == 0


def test_a_submit_of_an_invalid_flow_raises_flow_invalid_with_every_problem(
    parts: dict[str, Any],
) -> None:
    flow = json.loads(HELLO)
    flow["nodes"]["hi"]["progdef"] = "greett"
    with pytest.raises(FlowInvalid) as refused:
        parts["service"].submit(TEAM_A, json.dumps(flow), source="mine.json")
    assert any("greett" in line and "greet" in line for line in refused.value.problems)
    with pytest.raises(FlowInvalid, match="hi.nmae"):
        parts["service"].submit(TEAM_A, HELLO, sets=['hi.nmae=[{"text": "Ada"}]'])


def test_a_submit_with_a_bad_deadline_raises_request_invalid(parts: dict[str, Any]) -> None:
    with pytest.raises(RequestInvalid) as refused:
        parts["service"].submit(TEAM_A, HELLO, deadline_s=float("nan"))
    assert refused.value.problems == [
        "deadline_s must be a finite number of seconds, or 0 for no deadline; got nan"
    ]


def test_a_submit_while_the_broker_is_away_raises_broker_error_through_the_hooks(
    parts: dict[str, Any],
) -> None:
    with pytest.raises(BrokerError, match="not connected to the broker at amqp://guest:\\*\\*\\*@"):
        parts["service"].submit(TEAM_A, HELLO)
    ((submission, error),) = parts["hook"].seen
    assert (submission.name, submission.tenant, len(submission.jobs)) == ("hello", "team-a", 3)
    assert isinstance(error, BrokerError)
    assert all(job.flow_id == submission.flow_id for job in submission.jobs)
    assert parts["store"].get(submission.flow_id) is None  # refused before it is recorded
    registry = parts["metrics"].registry
    count = "dagyo_scheduler_submit_seconds_count"
    assert registry.get_sample_value(count, {"outcome": "failed"}) == 1
    assert registry.get_sample_value(count, {"outcome": "started"}) is None


def test_the_metrics_hook_times_each_start_by_outcome() -> None:
    metrics = SchedulerMetrics()
    ticks = iter([10.0, 10.25, 20.0, 20.5])
    hook = MetricsHook(metrics, clock=lambda: next(ticks))
    submission = Submission(flow_id="0123456789ab", name="hello", tenant="", jobs=[])
    with hook.around_submit(submission):
        pass
    with pytest.raises(BrokerError), hook.around_submit(submission):
        raise BrokerError("the broker went away")
    total = "dagyo_scheduler_submit_seconds_sum"
    assert metrics.registry.get_sample_value(total, {"outcome": "started"}) == 0.25
    assert metrics.registry.get_sample_value(total, {"outcome": "failed"}) == 0.5


def test_another_tenants_flow_is_not_found_and_an_admin_sees_it(parts: dict[str, Any]) -> None:
    service, store = parts["service"], parts["store"]
    add_record(store, "0123456789ab", "team-a")
    assert service.get(TEAM_A, "0123456789ab").state == FlowState.PENDING.proto
    assert service.get(ADMIN, "0123456789ab").id == "0123456789ab"
    for call in (service.get, service.cancel, service.watch, service.failures):
        with pytest.raises(FlowNotFound) as refused:
            call(TEAM_B, "0123456789ab")
        assert str(refused.value) == (
            "no flow '0123456789ab' on this scheduler: `dagyo flow list` shows the flows it knows"
        )
    assert [r.id for r in service.list(TEAM_A).records] == ["0123456789ab"]
    assert service.list(TEAM_B).records == [] and not service.list(TEAM_B).every_tenant
    assert service.list(ADMIN).every_tenant


def test_a_page_token_not_given_raises_request_invalid(parts: dict[str, Any]) -> None:
    with pytest.raises(RequestInvalid, match="page token 'nope' is not one this scheduler gave"):
        parts["service"].list(TEAM_A, token="nope")
    with pytest.raises(RequestInvalid, match="page token 'nope' is not one this scheduler gave"):
        parts["service"].failures(TEAM_A, token="nope")


def test_an_invalid_catalogue_raises_precondition_failed(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "progdef.json").write_text("{")
    service = FlowService(
        catalogue=CatalogueCache(tmp_path),
        store=SqliteStore(":memory:"),
        lifecycle=None,  # type: ignore[arg-type]  # never reached
        spares=None,  # type: ignore[arg-type]
        versions=None,  # type: ignore[arg-type]
        broker=None,
        stopping=threading.Event(),
    )
    for call in (service.catalogue, lambda p: service.submit(p, HELLO)):
        with pytest.raises(PreconditionFailed) as refused:
            call(TEAM_A)
        assert refused.value.problems[0] == "the scheduler's progdef catalogue is invalid:"


def test_invoke_of_an_unknown_progdef_raises_flow_invalid(parts: dict[str, Any]) -> None:
    with pytest.raises(FlowInvalid, match="greett"):
        parts["service"].invoke(TEAM_A, "greett", ['name={"text": "Ada"}'])


@pytest.mark.parametrize("example", ["hello.json", "geo.json", "count.json", "parse.json"])
def test_the_shape_a_submit_looks_for_a_spare_by_is_the_plans(example: str) -> None:
    checked = check_flow(parse_flow((EXAMPLES / example).read_text()), load_catalogue(PROGDEFS))
    plan = plan_flow(checked, flow_id="0123456789ab")
    assert queue_shape(checked) == shape_of("0123456789ab", plan.queues)
    assert queue_shape(checked)  # a shape with queues: spares apply to it


def test_a_page_of_flows_is_a_list_of_records(parts: dict[str, Any]) -> None:
    add_record(parts["store"], "0123456789ab", "team-a")
    page = parts["service"].list(TEAM_A, limit=1)
    assert isinstance(page.records[0], pb.FlowRecord) and page.next_token == ""
