"""The scheduler's SQLite state: records, runtimes, kept exports and failures survive a reopen."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from executor.core.errors import DagyoError
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_LOST, FAILURE_KIND_PANIC, FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.state import ExportStream, FlowRuntime, FlowState, FlowStore


def record(flow_id: str, created: float, state: FlowState = FlowState.RUNNING) -> pb.FlowRecord:
    flow = pb.FlowRecord(id=flow_id, name="hello", state=state.proto, created=created)
    flow.nodes.add(node="hi", progdef="greet", state=pb.NODE_STATE_RUNNING, executor="e1")
    return flow


def runtime() -> FlowRuntime:
    return FlowRuntime(
        deadline=123.5,
        queues=["dagyo.flow.f1.failures", "dagyo.flow.f1.export.greetings"],
        exports={
            "greetings": ExportStream(
                queue="dagyo.flow.f1.export.greetings",
                typename="dagyo.types.Text",
                source="hi.greeting",
            )
        },
    )


def test_state_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "state.sqlite3")
    store = FlowStore(path)
    flow = record("f1", 100.0)
    run = runtime()
    store.create(flow, run)
    exports = [pb.Export(export="greetings", value_json='{"text":"hello Ada"}')]
    run.kept_count, run.kept_bytes = 1, 30
    run.exports["greetings"].next_seq = 1
    flow.exports_truncated = True
    store.save(flow, run, exports)
    more = [pb.Export(export="greetings", value_json='{"text":"hello Bo"}')]
    run.kept_count += 1
    store.save(flow, run, more)
    failure = FailureReport(flow_id="f1", node="hi", progdef="greet", error="boom", kind=1)
    store.add_failure(failure)
    store.close()

    reopened = FlowStore(path)
    got = reopened.get("f1")
    assert got is not None
    assert got.name == "hello" and got.state == FlowState.RUNNING.proto
    assert got.exports_truncated
    assert [(e.export, e.value_json) for e in got.exports] == [
        ("greetings", '{"text":"hello Ada"}'),
        ("greetings", '{"text":"hello Bo"}'),
    ]
    assert got.nodes[0].executor == "e1"
    assert reopened.runtime("f1") == run
    assert [r.error for r in reopened.failures("f1")[0]] == ["boom"]
    assert [r.id for r, _ in reopened.active()] == ["f1"]
    reopened.close()


def test_records_are_stored_without_exports(tmp_path: Path) -> None:
    store = FlowStore(":memory:")
    flow = record("f1", 1.0)
    flow.exports.add(export="x", value_json="1")  # kept only through save(exports=...)
    store.create(flow, runtime())
    got = store.get("f1")
    assert got is not None and list(got.exports) == []
    assert store.get("f1", with_exports=False) is not None
    assert store.get("nope") is None and store.runtime("nope") is None


def test_recent_active_and_counts(tmp_path: Path) -> None:
    store = FlowStore(str(tmp_path / "s.sqlite3"))
    store.create(record("old", 1.0, FlowState.SUCCEEDED), FlowRuntime())
    store.create(record("mid", 2.0, FlowState.PENDING), FlowRuntime())
    store.create(record("new", 3.0, FlowState.RUNNING), FlowRuntime())
    assert [r.id for r in store.recent()[0]] == ["new", "mid", "old"]
    assert [r.id for r in store.recent(2)[0]] == ["new", "mid"]
    assert [r.id for r, _ in store.active()] == ["mid", "new"]
    done = record("new", 3.0, FlowState.FAILED)
    store.save(done)
    assert [r.id for r, _ in store.active()] == ["mid"]
    counts = store.count_by_state()
    assert counts[FlowState.SUCCEEDED] == 1 and counts[FlowState.FAILED] == 1
    assert counts[FlowState.CANCELLED] == 0


def test_failures_of_every_flow_in_order() -> None:
    store = FlowStore(":memory:")
    store.add_failure(FailureReport(flow_id="a", error="first", kind=FAILURE_KIND_PANIC))
    store.add_failure(FailureReport(flow_id="b", error="second", kind=FAILURE_KIND_LOST))
    store.add_failure(FailureReport(flow_id="a", error="third", kind=FAILURE_KIND_PANIC))
    assert [r.error for r in store.failures()[0]] == ["first", "second", "third"]
    assert [r.error for r in store.failures("a")[0]] == ["first", "third"]
    assert store.failures("c")[0] == []


def test_states_match_the_protobuf_enum() -> None:
    for state in FlowState:
        assert pb.FlowState.Name(state.proto) == f"FLOW_STATE_{state.value.upper()}"
        assert FlowState.from_proto(state.proto) is state
    assert {s.value for s in FlowState if s.active} == {"pending", "running"}


def test_concurrent_writers_keep_every_failure() -> None:
    store = FlowStore(":memory:")

    def write(n: int) -> None:
        for i in range(50):
            store.add_failure(FailureReport(flow_id="f", error=f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.failures("f", limit=500)[0]) == 200


def test_unwritable_state_path_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DagyoError, match="DAGYO_STATE"):
        FlowStore(str(blocker / "state.sqlite3"))


def test_list_and_failures_come_in_pages_that_join_up() -> None:
    store = FlowStore(":memory:")
    for i in range(7):
        store.create(record(f"f{i}", float(i // 2), FlowState.SUCCEEDED), FlowRuntime())
        store.add_failure(FailureReport(flow_id=f"f{i}", error=f"boom {i}"))
    seen, token = [], ""
    while True:
        page, token = store.recent(3, token=token)
        seen += [r.id for r in page]
        if not token:
            break
    assert seen == ["f6", "f5", "f4", "f3", "f2", "f1", "f0"]
    errors, token = [], ""
    while True:
        reports, token = store.failures(limit=2, token=token)
        errors += [r.error for r in reports]
        if not token:
            break
    assert errors == [f"boom {i}" for i in range(7)]
    with pytest.raises(ValueError, match="page token"):
        store.recent(token="nonsense")


def test_a_huge_failure_text_is_kept_cut_with_a_marker() -> None:
    store = FlowStore(":memory:")
    panic = "x" * 2_500_000
    failed = record("big", 1.0, FlowState.FAILED)
    failed.failure.CopyFrom(FailureReport(flow_id="big", error=panic, traceback=panic + "End"))
    store.create(failed, FlowRuntime())
    store.add_failure(failed.failure)
    kept = store.get("big")
    assert kept is not None and kept.ByteSize() < 64 * 1024
    assert kept.failure.error.startswith("xxx") and "characters not shown" in kept.failure.error
    assert kept.failure.traceback.endswith("xEnd")
    (report,), _ = store.failures("big")
    assert report.ByteSize() < 64 * 1024 and "characters not shown" in report.error


def test_progdef_versions_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    store = FlowStore(path)
    store.save_version("dagyo.mailbox.greet.v1", progdef="greet", version="v1", state="current")
    store.save_version("dagyo.mailbox.greet.v1", progdef="greet", version="v1", state="retired")
    store.save_version("dagyo.mailbox.greet.v2", progdef="greet", version="v2", state="current")
    store.close()
    assert FlowStore(path).versions() == [
        ("dagyo.mailbox.greet.v1", "greet", "v1", "retired"),
        ("dagyo.mailbox.greet.v2", "greet", "v2", "current"),
    ]
