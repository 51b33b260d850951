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
from tests.scheduler.fake_executor import eventually


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
        eventually(lambda: acked == ["after v5"], "the ack once stored")
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
