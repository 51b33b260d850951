"""The store's writer: the broker's thread hands its writes over and goes on; each flow's
writes are stored in order, a message is acked only once stored, and a stop stores what
was queued."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime, FlowState
from scheduler.service.store import SqliteStore, StoreUnavailable, StoreWriter
from tests.conftest import rabbitmqctl, vhost_of
from tests.scheduler.fake_executor import Client, FakeExecutor, texts
from tests.waiting import eventually


class HeldStore(SqliteStore):
    """A SQLite store whose saves wait while ``held`` is clear, and fail ``refusals`` times
    first as a database that does not answer."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.held = threading.Event()
        self.held.set()
        self.refusals = 0

    def save(self, *args: Any, **options: Any) -> None:
        self.held.wait()
        if self.refusals:
            self.refusals -= 1
            raise StoreUnavailable("the test's database", "refused")
        super().save(*args, **options)


def record(flow_id: str, name: str) -> pb.FlowRecord:
    return pb.FlowRecord(id=flow_id, name=name, state=FlowState.RUNNING.proto, created=1.0)


def test_a_save_returns_at_once_and_is_acked_only_once_stored(tmp_path: Path) -> None:
    store = HeldStore(str(tmp_path / "s.sqlite3"))
    writer = StoreWriter(store)
    try:
        writer.create(record("f1", "v0"), FlowRuntime())
        store.held.clear()  # the database is busy
        acked: list[str] = []
        for n in range(1, 6):
            writer.save(record("f1", f"v{n}"))  # returns although nothing can be stored
        writer.when_written(lambda: acked.append("after v5"))
        assert acked == [] and store.get("f1").name == "v0"  # type: ignore[union-attr]
        store.held.set()
        eventually(lambda: acked == ["after v5"], what="the ack once stored")
        got = writer.get("f1")
        assert got is not None and got.name == "v5"  # the last of the flow's writes
    finally:
        writer.close()


def test_a_read_waits_for_the_writes_queued_before_it(tmp_path: Path) -> None:
    writer = StoreWriter(HeldStore(str(tmp_path / "s.sqlite3")))
    try:
        writer.create(record("f1", "v0"), FlowRuntime())
        for n in range(200):
            writer.save(record("f1", f"v{n}"))
            writer.add_failure(FailureReport(flow_id="f1", error=f"e{n}"))
        got = writer.get("f1")
        assert got is not None and got.name == "v199"
        assert len(writer.failures("f1", limit=500)[0]) == 200
    finally:
        writer.close()


def test_a_write_the_database_refuses_for_a_while_is_stored_once_it_answers(
    tmp_path: Path,
) -> None:
    store = HeldStore(str(tmp_path / "s.sqlite3"))
    writer = StoreWriter(store)
    try:
        writer.create(record("f1", "v0"), FlowRuntime())
        store.refusals = 2
        writer.save(record("f1", "v1"))
        got = writer.get("f1")
        assert got is not None and got.name == "v1" and store.refusals == 0
    finally:
        writer.close()


def test_a_stop_stores_what_was_queued(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    store = HeldStore(path)
    writer = StoreWriter(store)
    for n in range(50):
        writer.create(record(f"f{n}", "new"), FlowRuntime())
    store.held.clear()
    for n in range(50):
        writer.save(record(f"f{n}", "saved"))
    threading.Timer(0.2, store.held.set).start()
    writer.close()
    reopened = SqliteStore(path)
    try:
        assert {r.name for r in reopened.recent(100)[0]} == {"saved"}
    finally:
        reopened.close()


class HeldSaves:
    """A store whose saves wait while ``free`` is clear."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.free = threading.Event()

    def save(self, *args: Any, **options: Any) -> None:
        self.free.wait()
        self.store.save(*args, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def unacked(broker_url: str, queue: str) -> int:
    lines = rabbitmqctl(
        "list_queues",
        "-q",
        "--no-table-headers",
        "-p",
        vhost_of(broker_url),
        "name",
        "messages_unacknowledged",
    ).splitlines()
    counts = dict(line.split() for line in lines if line.strip())
    return int(counts.get(queue, 0))


def test_an_export_frame_is_acked_only_once_its_items_are_stored(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    assert client.scheduler.store is not None
    writer = client.scheduler.store
    held = HeldSaves(writer.store)
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    [export] = [q for q in jobs["b"].outputs["text"].queues if ".export." in q]
    writer.store = held  # the database stops answering saves
    try:
        fake.send(jobs["b"], "text", texts("x0"), seq=0)
        eventually(lambda: unacked(broker_url, export) == 1, what="the frame taken, not acked")
        assert writer.store is held and not held.free.is_set()
    finally:
        held.free.set()
        writer.store = held.store
    eventually(lambda: unacked(broker_url, export) == 0, what="the frame acked once stored")
    stored = writer.get(flow_id)
    assert stored is not None and [e.value_json for e in stored.exports] == ['{"text":"x0"}']
