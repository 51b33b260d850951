"""Queues declared ahead: a flow shaped like a recent one starts on queues that exist.

After a flow starts, the scheduler declares the queues of one more flow of the same shape
(the same stream and export queue names but for the flow id) under a fresh flow id: the
*spare*. The next submit of that shape takes the spare's id and skips declaring its queues
(docs/protocol.md, "Queues declared ahead"). These tests hold that a spare is used, that
nothing of it is left once it idled, at a stop, or after a crash, and that a flow of
another shape still declares its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from executor.core.constants import FLOW_PREFIX
from executor.core.topology import stream_arguments
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.config import SchedulerSettings
from scheduler.service.store import SqliteStore
from tests.conftest import rabbitmqctl, vhost_of
from tests.scheduler.fake_executor import (
    Client,
    FakeExecutor,
    assert_no_queue_left,
    connections,
    end_of,
    flow_queues,
    queues_by_flow,
    run_to_success,
)
from tests.waiting import eventually


def run_one(client: Client, fake: FakeExecutor) -> tuple[str, set[str]]:
    """Run FLOW to success; its flow id and its shape (its queue names past the flow id)."""
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    queues = set().union(*(flow_queues(job) for job in jobs.values()))
    run_to_success(fake, jobs)
    assert end_of(client.watch(flow_id)).state == pb.FLOW_STATE_SUCCEEDED
    assert_no_queue_left(client.settings.queue_url, list(jobs.values()))
    return flow_id, {q.removeprefix(f"{FLOW_PREFIX}.{flow_id}.") for q in queues}


def spares(url: str, shape: set[str], but: frozenset[str] = frozenset()) -> list[str]:
    """The flow ids whose queues have ``shape`` (and are not in ``but``)."""
    return [f for f, rests in queues_by_flow(url).items() if rests == shape and f not in but]


def the_spare(url: str, shape: set[str], but: frozenset[str]) -> str:
    """Wait for the one spare of ``shape`` (not in ``but``), and return its flow id; caught
    in the very look-up that finds it, as one that idles out may be gone by the next."""
    seen: list[list[str]] = []

    def found() -> bool:
        seen.append(spares(url, shape, but))
        return bool(seen[-1])

    eventually(found, what="a spare")
    (spare,) = seen[-1]
    return spare


@pytest.fixture
def spare_settings(settings: SchedulerSettings) -> SchedulerSettings:
    return dataclasses.replace(settings, spare_idle_s=30.0)


@pytest.fixture
def spare_client(spare_settings: SchedulerSettings) -> Iterator[Client]:
    client = Client(spare_settings)
    yield client
    client.close()


def test_the_next_flow_of_a_shape_takes_the_spare_declared_for_it(
    spare_client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    others = frozenset(queues_by_flow(broker_url))  # other tests' schedulers may have left some
    _, shape = run_one(spare_client, fake)

    spare = the_spare(broker_url, shape, others)

    second, _ = run_one(spare_client, fake)
    assert second == spare  # its queues were there before it was submitted
    # and the one after it has a spare again; the used one's queues went with its flow
    eventually(lambda: spares(broker_url, shape, others | {spare}) != [], what="the next spare")
    assert spare not in queues_by_flow(broker_url)


def test_a_stopped_scheduler_leaves_no_spare(
    spare_settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    others = frozenset(queues_by_flow(broker_url))
    client = Client(spare_settings)
    try:
        _, shape = run_one(client, fake)
        spare = the_spare(broker_url, shape, others)
    finally:
        client.close()

    assert spare not in queues_by_flow(broker_url)


@pytest.mark.slow
def test_a_spare_nobody_takes_is_deleted_once_it_idled(
    settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    others = frozenset(queues_by_flow(broker_url))
    client = Client(dataclasses.replace(settings, spare_idle_s=2.0))
    try:
        _, shape = run_one(client, fake)
        # A spare's row is stored before its queues are declared, and removed once they are
        # deleted: read in process, it is seen however soon the spare idles out.
        store = client.scheduler.store
        ((spare, queues, _),) = eventually(store.spares, what="a spare")
        assert {q.removeprefix(f"{FLOW_PREFIX}.{spare}.") for q in queues} == shape
        eventually(lambda: not store.spares(), what="the idle spare deleted")
        assert spare not in queues_by_flow(broker_url)
        # and none made again by the next pass: no flow of that shape came since
        client.scheduler.spares.tend()
        assert store.spares() == []
        assert spares(broker_url, shape, others) == []
    finally:
        client.close()


def test_spares_left_by_a_scheduler_that_died_are_deleted_at_the_next_start(
    spare_settings: SchedulerSettings, broker_url: str, tmp_path: Path
) -> None:
    # What a scheduler killed with spares ready leaves: their queues, and their rows.
    left = "0123456789ab"
    names = [f"{FLOW_PREFIX}.{left}.in.b.text", f"{FLOW_PREFIX}.{left}.export.out"]
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_declare(name, arguments=stream_arguments())
    finally:
        connection.close()
    store = SqliteStore(spare_settings.state_path)
    store.add_spare(left, names)
    store.close()

    client = Client(spare_settings)
    try:
        eventually(lambda: left not in queues_by_flow(broker_url), what="the dead one's spare gone")
        assert client.scheduler.store.spares() == []
    finally:
        client.close()


def test_spares_off_declares_every_flow_at_submit(
    settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    others = frozenset(queues_by_flow(broker_url))
    client = Client(dataclasses.replace(settings, spare_idle_s=0.0))
    try:
        _, shape = run_one(client, fake)
        client.scheduler.spares.tend()  # a pass, done: it made none (nor will the thread)
        assert client.scheduler.store.spares() == []
        assert spares(broker_url, shape, others) == []
    finally:
        client.close()


@pytest.mark.slow
def test_after_a_lost_connection_spares_are_deleted_and_the_next_flow_runs(
    spare_settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    vhost = vhost_of(broker_url)
    before = connections(vhost)
    others = frozenset(queues_by_flow(broker_url))
    client = Client(spare_settings)
    try:
        (scheduler_connection,) = connections(vhost) - before
        _, shape = run_one(client, fake)
        spare = the_spare(broker_url, shape, others)

        rabbitmqctl("close_connection", scheduler_connection, "test: broker went away")

        # Its queues may have been lost with the broker: not trusted, deleted once back.
        eventually(lambda: spare not in queues_by_flow(broker_url), what="the spare deleted")
        second, _ = run_one(client, fake)
        assert second != spare
    finally:
        client.close()
