"""The queues a flow with cacheable nodes gets (docs/cache.md): a cacheable output that is
exported is recorded from its export's frames, one without an export from a recording queue
of its own; and those queues are part of the shape a submit looks for a spare by, cached
node or not, so a flow of a recent shape declares none at submit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from executor.core.progdef import load_catalogue
from scheduler.flow.cache_key import cache_keys
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from scheduler.flow.plan import plan_flow
from scheduler.service.broker import Broker
from scheduler.service.cached import ClusterCache
from scheduler.service.lifecycle import Lifecycle
from scheduler.service.metrics import SchedulerMetrics
from scheduler.service.recording import recorded
from scheduler.service.spares import queue_shape, shape_of
from scheduler.service.store import SqliteStore, StoreWriter
from tests.conftest import EXAMPLES, PROGDEFS

FLOW_ID = "0123456789ab"


@pytest.fixture
def cache() -> Iterator[ClusterCache]:
    """The cache of a scheduler over a real store, its broker never connected."""
    store = StoreWriter(SqliteStore(":memory:"))
    broker = Broker("amqp://guest:guest@127.0.0.1:1/")  # nothing listens: never used
    lifecycle = Lifecycle(
        store, broker, SchedulerMetrics(), heartbeat_timeout_s=15.0, export_cap_bytes=1 << 20
    )
    try:
        yield lifecycle.cache
    finally:
        store.close()


def hello(**exports: str) -> str:
    flow = json.loads((EXAMPLES / "hello.json").read_text())
    if exports:
        flow["exports"] = exports
    return json.dumps(flow)


def test_a_hello_flows_first_run_gets_one_recording_queue_not_two(cache: ClusterCache) -> None:
    checked = check_flow(parse_flow(hello()), load_catalogue(PROGDEFS))
    prepared = cache.prepare("", checked, plan_flow(checked, flow_id=FLOW_ID))
    # hi.greeting is exported as greetings: recorded from that export; names.src is not.
    assert sorted(shape_of(FLOW_ID, prepared.plan.queues)) == [
        "export.greetings",
        "in.hi.name",
        "in.out.sink",
        "record.names.src",
    ]
    assert prepared.exported == {"greetings": "hi.greeting"}
    assert sorted(prepared.recordings) == ["names.src"]
    assert sorted(prepared.entries) == ["hi", "names", "out"]
    (hi,) = [job.descriptor for job in prepared.plan.jobs if job.descriptor.node == "hi"]
    assert not any(".record." in queue for queue in hi.outputs["greeting"].queues)


def test_an_output_exported_twice_is_recorded_from_one_export(cache: ClusterCache) -> None:
    flow = hello(first="hi.greeting", again="hi.greeting")
    checked = check_flow(parse_flow(flow), load_catalogue(PROGDEFS))
    prepared = cache.prepare("", checked, plan_flow(checked, flow_id=FLOW_ID))
    assert prepared.exported == {"first": "hi.greeting"}
    assert "hi.greeting" not in prepared.recordings


@pytest.mark.parametrize("example", ["hello.json", "geo.json", "count.json", "parse.json"])
def test_the_shape_a_submit_looks_for_a_spare_by_holds_the_recording_queues(
    example: str, cache: ClusterCache
) -> None:
    checked = check_flow(parse_flow((EXAMPLES / example).read_text()), load_catalogue(PROGDEFS))
    keys = cache_keys(checked)
    prepared = cache.prepare("", checked, plan_flow(checked, flow_id=FLOW_ID), keys=keys)
    assert queue_shape(checked, recorded(checked, keys)) == shape_of(FLOW_ID, prepared.plan.queues)
    recording = {stream.queue for stream in prepared.recordings.values()}
    assert recording <= set(prepared.plan.queues)
