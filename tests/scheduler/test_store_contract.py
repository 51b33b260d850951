"""The store contract: every store (SQLite, PostgreSQL, and the writer in front of either)
keeps records, runtimes, exports, failures, spares, versions and trigger firings alike,
across a reopen."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_LOST, FAILURE_KIND_PANIC, FailureReport
from scheduler.cache.folder import Entry, Output
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import ExportStream, FlowRuntime, FlowState
from scheduler.service.store import (
    Fence,
    LeaseLost,
    SchemaTooNew,
    Store,
    StoreWriter,
    open_store,
)
from scheduler.service.store.migrations import SQLITE
from tests.postgres import fresh_database

Opener = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgresql", "writer", "postgresql-writer"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same store each time it is called (a reopen), closing each at the end;
    ``writer`` is the writer thread in front of the store (as the scheduler uses it)."""
    opened: list[Store] = []

    def open_at(state: str, writer: bool) -> Opener:
        def open_again(**options: str) -> Store:
            store: Store = open_store(state, **options)
            store = StoreWriter(store) if writer else store
            opened.append(store)
            return store

        return open_again

    if request.param.startswith("postgresql"):
        with fresh_database() as url:
            yield open_at(url, request.param.endswith("writer"))
            for store in opened:
                store.close()
        return
    yield open_at(str(tmp_path / "nested" / "state.sqlite3"), request.param == "writer")
    for store in opened:
        store.close()


def record(
    flow_id: str, created: float, state: FlowState = FlowState.RUNNING, tenant: str = ""
) -> pb.FlowRecord:
    flow = pb.FlowRecord(id=flow_id, name="hello", state=state.proto, created=created)
    flow.tenant = tenant
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


def test_state_round_trip_survives_reopen(opener: Opener) -> None:
    store = opener()
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

    reopened = opener()
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


def test_what_a_caller_changes_after_a_save_is_not_saved(opener: Opener) -> None:
    store = opener()
    flow, run = record("f1", 1.0), runtime()
    store.create(flow, run)
    store.save(flow, run)
    flow.name, run.deadline = "changed", 9.0
    got = store.get("f1")
    assert got is not None and got.name == "hello"
    assert store.runtime("f1") == runtime()


def test_a_save_made_twice_keeps_its_exports_once(opener: Opener) -> None:
    store = opener()
    flow, run = record("f1", 1.0), runtime()
    store.create(flow, run)
    store.create(flow, run)  # a retried create changes nothing
    run.kept_count = 1
    kept = [pb.Export(export="greetings", value_json='"a"')]
    store.save(flow, run, kept)
    store.save(flow, run, kept)
    assert [e.value_json for e in store.exports("f1")] == ['"a"']


def test_records_are_stored_without_exports(opener: Opener) -> None:
    store = opener()
    flow = record("f1", 1.0)
    flow.exports.add(export="x", value_json="1")  # kept only through save(exports=...)
    store.create(flow, runtime())
    got = store.get("f1")
    assert got is not None and list(got.exports) == []
    assert store.get("f1", with_exports=False) is not None
    assert store.get("nope") is None and store.runtime("nope") is None


def test_recent_active_and_counts(opener: Opener) -> None:
    store = opener()
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


def test_tenants_see_their_own_flows_and_failures(opener: Opener) -> None:
    store = opener()
    store.create(record("a1", 1.0, FlowState.RUNNING, tenant="a"), FlowRuntime())
    store.create(record("a2", 2.0, FlowState.SUCCEEDED, tenant="a"), FlowRuntime())
    store.create(record("b1", 3.0, FlowState.PENDING, tenant="b"), FlowRuntime())
    store.add_failure(FailureReport(flow_id="a2", error="of a"))
    store.add_failure(FailureReport(flow_id="b1", error="of b"))
    assert [r.id for r in store.recent(tenant="a")[0]] == ["a2", "a1"]
    assert store.running_count("a") == 1 and store.running_count("b") == 1
    assert store.running_count("c") == 0
    assert [r.error for r in store.failures(tenant="b")[0]] == ["of b"]


def test_failures_of_every_flow_in_order(opener: Opener) -> None:
    store = opener()
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


def test_concurrent_writers_keep_every_failure(opener: Opener) -> None:
    store = opener()

    def write(n: int) -> None:
        for i in range(50):
            store.add_failure(FailureReport(flow_id="f", error=f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.failures("f", limit=500)[0]) == 200


def test_list_and_failures_come_in_pages_that_join_up(opener: Opener) -> None:
    store = opener()
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
    with pytest.raises(ValueError, match="page token"):
        store.failures(token="nonsense")


def test_a_huge_failure_text_is_kept_cut_with_a_marker(opener: Opener) -> None:
    store = opener()
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


def test_progdef_versions_survive_a_reopen(opener: Opener) -> None:
    store = opener()
    store.save_version("dagyo.mailbox.greet.v1", progdef="greet", version="v1", state="current")
    store.save_version("dagyo.mailbox.greet.v1", progdef="greet", version="v1", state="retired")
    store.save_version("dagyo.mailbox.greet.v2", progdef="greet", version="v2", state="current")
    store.close()
    assert opener().versions() == [
        ("dagyo.mailbox.greet.v1", "greet", "v1", "retired"),
        ("dagyo.mailbox.greet.v2", "greet", "v2", "current"),
    ]


def test_spares_say_which_a_flow_took(opener: Opener) -> None:
    store = opener()
    store.add_spare("s1", ["q.a", "q.b"])
    store.add_spare("s2", ["q.c"])
    store.add_spare("s2", ["q.d"])  # noted again: its queues now
    store.create(record("s1", 1.0), FlowRuntime())
    assert store.spares() == [("s1", ["q.a", "q.b"], True), ("s2", ["q.d"], False)]
    store.remove_spares(["s1"])
    store.close()
    assert opener().spares() == [("s2", ["q.d"], False)]


def test_trigger_firings_are_kept_once_per_event(opener: Opener) -> None:
    firings = opener().firings
    assert firings.flow_ids("t", "src", "e1") is None
    firings.add("t", [("src", "e1"), ("src", "e2")], ["f1"])
    firings.add("t", [("src", "e1")], ["f9"])  # the same event again: kept as it was
    for n in range(3, 9):
        firings.add("t", [("src", f"e{n}")], [f"f{n}"])
    firings.add("other", [("src", "e1")], ["g1"])
    assert firings.flow_ids("t", "src", "e1") == ["f1"]
    count, last = firings.last("t")
    assert count == 8
    assert [f.event_id for f in last] == ["e8", "e7", "e6", "e5", "e4"]
    assert list(last[0].flow_ids) == ["f8"] and last[0].event_source == "src"


def test_batched_events_wait_until_their_flow_starts_or_is_refused(opener: Opener) -> None:
    store = opener()
    firings = store.firings
    firings.batched("t", ("src", "e1"), {"hi.name": "Ada"})
    firings.batched("t", ("src", "e2"), {"hi.name": "Bo"})
    firings.batched("u", ("src", "e1"), {"x": 1})
    firings.batched("t", ("src", "e1"), {"hi.name": "again"})  # accepted once
    store.close()
    firings = opener().firings
    assert firings.waiting() == [
        ("t", ("src", "e1"), {"hi.name": "Ada"}),
        ("t", ("src", "e2"), {"hi.name": "Bo"}),
        ("u", ("src", "e1"), {"x": 1}),
    ]
    firings.add("t", [("src", "e1")], ["f1"])  # its flow started
    firings.unbatched("u", [("src", "e1")])  # refused for good
    assert firings.waiting() == [("t", ("src", "e2"), {"hi.name": "Bo"})]


def test_the_first_broker_owns_the_store(opener: Opener) -> None:
    opener(owner="localhost:5672 vhost a").close()
    opener(owner="localhost:5672 vhost a").close()
    with pytest.raises(Exception, match="vhost a, not localhost:5672 vhost b") as refused:
        opener(owner="localhost:5672 vhost b")
    assert "DAGYO_STATE" in str(refused.value)


def test_a_store_of_a_newer_schema_is_refused_in_one_line(opener: Opener) -> None:
    store = opener()
    inner = store.store if isinstance(store, StoreWriter) else store
    with inner.session() as db:  # type: ignore[attr-defined]
        db.execute("INSERT INTO schema_version (version, applied) VALUES (999, 0)")
    store.close()
    with pytest.raises(SchemaTooNew) as refused:
        opener()
    message = str(refused.value)
    assert "\n" not in message
    assert f"schema version 999, newer than this scheduler's {len(SQLITE)}" in message


def test_a_store_of_an_older_schema_is_migrated_at_open(opener: Opener) -> None:
    store = opener()
    inner = store.store if isinstance(store, StoreWriter) else store
    with inner.session() as db:  # type: ignore[attr-defined]
        db.execute("DROP TABLE flow_leases")  # as a store of schema version 1 was
        db.execute("DROP TABLE cache_streams")
        db.execute("DROP TABLE cache_entries")
        db.execute("DROP TABLE schedulers")
        db.execute("DROP TABLE cancels")
        db.execute("ALTER TABLE spares DROP COLUMN owner")
        db.execute("DELETE FROM schema_version WHERE version >= 2")
    store.close()
    store = opener()
    assert store.leases.acquire("f1", "a", lease_s=60) == 1
    assert store.cache.entries() == []
    assert store.members.beat("a", lease_s=60) == ["a"]


def test_a_lease_is_held_until_released_then_taken_with_the_next_epoch(opener: Opener) -> None:
    leases = opener().leases
    assert leases.lease("f1") is None
    assert leases.acquire("f1", "a", lease_s=60) == 1
    assert leases.acquire("f1", "b", lease_s=60) is None  # a's lease runs
    assert leases.acquire("f1", "a", lease_s=60) == 1  # its own again: the same epoch
    assert leases.renew("f1", Fence("a", 1), lease_s=60)
    leases.release("f1", Fence("a", 1))
    assert leases.acquire("f1", "b", lease_s=60) == 2
    assert not leases.renew("f1", Fence("a", 1), lease_s=60)
    leases.release("f1", Fence("a", 1))  # not a's to give up: nothing
    held = leases.lease("f1")
    assert held is not None and (held.owner, held.epoch) == ("b", 2)
    assert leases.acquire("f2", "a", lease_s=60) == 1  # each flow its own lease


def test_a_lease_that_ran_out_is_taken_over(opener: Opener) -> None:
    leases = opener().leases
    assert leases.acquire("f1", "a", lease_s=60) == 1
    assert leases.renew("f1", Fence("a", 1), lease_s=-1)  # as if a was paused past it
    assert leases.acquire("f1", "b", lease_s=60) == 2
    assert not leases.renew("f1", Fence("a", 1), lease_s=60)  # a wakes up: not its own
    assert leases.acquire("f1", "a", lease_s=60) is None


def test_writes_fenced_with_a_lease_taken_over_are_refused(opener: Opener) -> None:
    store = opener()
    flow, run = record("f1", 1.0), runtime()
    store.create(flow, run)
    assert store.leases.acquire("f1", "a", lease_s=60) == 1
    flow.name, run.kept_count = "by a", 1
    store.save(flow, run, [pb.Export(export="greetings", value_json='"a"')], fence=Fence("a", 1))
    store.add_failure(FailureReport(flow_id="f1", error="seen by a"), fence=Fence("a", 1))
    stored = store.get("f1")  # (the writer's queue stored before the lease is lost)
    assert stored is not None and stored.name == "by a"
    assert store.leases.renew("f1", Fence("a", 1), lease_s=-1)
    assert store.leases.acquire("f1", "b", lease_s=60) == 2
    flow.name = "by b"
    store.save(flow, fence=Fence("b", 2))

    late, late_run = record("f1", 1.0), runtime()
    late.name, late_run.kept_count = "late a", 2
    refused: list[Exception] = []
    for write in (
        lambda: store.save(
            late, late_run, [pb.Export(export="greetings", value_json='"x"')], fence=Fence("a", 1)
        ),
        lambda: store.add_failure(FailureReport(flow_id="f1", error="late"), fence=Fence("a", 1)),
        lambda: store.save(record("f2", 1.0), fence=Fence("a", 1)),  # no lease at all
    ):
        try:
            write()
        except LeaseLost as e:
            refused.append(e)
    if not isinstance(store, StoreWriter):  # the writer logs and drops what is refused
        assert len(refused) == 3
        assert "a write of a (epoch 1) was refused: the flow's lease is held by b (epoch 2)" in str(
            refused[0]
        )
    got = store.get("f1")
    assert got is not None and got.name == "by b"
    assert [e.value_json for e in got.exports] == ['"a"']
    assert [r.error for r in store.failures("f1")[0]] == ["seen by a"]


def test_of_schedulers_taking_one_lease_at_once_exactly_one_gets_it(opener: Opener) -> None:
    leases = opener().leases
    got: dict[str, int | None] = {}
    start = threading.Barrier(8)

    def take(owner: str) -> None:
        start.wait()
        got[owner] = leases.acquire("f1", owner, lease_s=60)

    threads = [threading.Thread(target=take, args=(f"s{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [owner for owner, epoch in got.items() if epoch == 1]
    assert [epoch for epoch in got.values() if epoch != 1] == [None] * 7
    held = leases.lease("f1")
    assert held is not None and held.owner == winner


def cache_entry(key: str, *, tenant: str = "", progdef: str = "greet", used: float = 1.0) -> Entry:
    return Entry(
        key=key,
        progdef=progdef,
        version="v1",
        node="hi",
        flow="f1",
        made=used,
        last_used=used,
        outputs={"greeting": Output(items=1, bytes=100, sha256="ab" * 32)},
        tenant=tenant,
    )


def test_cached_results_are_kept_per_tenant_across_a_reopen(opener: Opener) -> None:
    store = opener()
    assert store.cache.put(cache_entry("k1", tenant="a"), {"greeting": b"x" * 100}, max_bytes=1000)
    store.close()
    cache = opener().cache
    found = cache.get("a", "k1")
    assert found is not None
    entry, streams = found
    assert (entry.tenant, entry.key, entry.progdef, entry.node, entry.flow) == (
        "a",
        "k1",
        "greet",
        "hi",
        "f1",
    )
    assert entry.outputs["greeting"] == Output(items=1, bytes=100, sha256="ab" * 32)
    assert streams == {"greeting": b"x" * 100}
    assert cache.get("a", "k1", streams=False) == (entry, {})
    assert cache.get("b", "k1") is None  # another tenant never reads it
    assert cache.have("a", ["k0", "k1", *[f"x{n}" for n in range(1200)]]) == {"k1"}
    assert cache.have("b", ["k1"]) == set()
    cache.touch("a", "k1", 50.0)
    assert [(e.key, e.hits, e.last_used) for e in cache.entries("a")] == [("k1", 1, 50.0)]
    assert cache.entries("b") == []
    assert [e.tenant for e in cache.entries()] == ["a"]


def test_the_cache_evicts_the_least_recently_used_entries_past_its_bound(opener: Opener) -> None:
    cache = opener().cache
    for n, used in ((1, 10.0), (2, 30.0), (3, 20.0)):
        cache.put(cache_entry(f"k{n}", used=used), {"greeting": b"x" * 100}, max_bytes=1000)
    assert not cache.put(cache_entry("huge"), {"greeting": b""}, max_bytes=99)
    cache.put(cache_entry("k4", used=5.0), {"greeting": b"x" * 100}, max_bytes=250)
    # k4 was just put: it stays, and the least recently used others go down to the bound.
    assert sorted(e.key for e in cache.entries()) == ["k2", "k4"]
    assert cache.get("", "k1") is None


def test_cache_drop_takes_a_progdef_a_version_or_a_key_of_one_tenant(opener: Opener) -> None:
    cache = opener().cache
    cache.put(cache_entry("k1", tenant="a"), {"greeting": b"1"}, max_bytes=1000)
    cache.put(cache_entry("k2", tenant="a", progdef="count"), {"greeting": b"2"}, max_bytes=1000)
    cache.put(cache_entry("k3", tenant="b"), {"greeting": b"3"}, max_bytes=1000)
    assert [e.key for e in cache.drop("a", "greet@v2")] == []
    assert [e.key for e in cache.drop("a", "greet@v1")] == ["k1"]
    assert [e.key for e in cache.drop("b", "k2")] == []  # not its entry
    assert [e.key for e in cache.drop(None, "k2")] == ["k2"]
    assert cache.get("a", "k2") is None
    assert [e.key for e in cache.drop(None)] == ["k3"]
    assert cache.entries() == []


def test_writes_fenced_by_their_shard_s_lease_follow_that_lease(opener: Opener) -> None:
    store = opener()
    flow, run = record("a1", 1.0), runtime()
    store.create(flow, run)
    assert store.leases.acquire("shard-a", "s1", lease_s=60) == 1
    many = [pb.Export(export="greetings", value_json=f'"{i}"') for i in range(450)]
    run.kept_count = len(many)
    store.save(flow, run, many, fence=Fence("s1", 1, "shard-a"))
    got = store.get("a1")
    assert got is not None and [e.value_json for e in got.exports] == [f'"{i}"' for i in range(450)]
    assert store.leases.renew("shard-a", Fence("s1", 1, "shard-a"), lease_s=-1)
    assert store.leases.acquire("shard-a", "s2", lease_s=60) == 2
    flow.name = "late"
    try:
        store.save(flow, fence=Fence("s1", 1, "shard-a"))
    except LeaseLost as e:
        assert "a1 (shard-a): a write of s1 (epoch 1) was refused" in str(e)
    got = store.get("a1")
    assert got is not None and got.name != "late"


def test_live_schedulers_and_cancels_asked_of_an_owner(opener: Opener) -> None:
    store = opener()
    assert store.members.beat("s1", lease_s=60) == ["s1"]
    assert store.members.beat("s2", lease_s=-1) == ["s1"]  # ran out at once
    assert store.members.dead() == ["s2"]
    store.members.forget(["s2"])
    assert store.members.dead() == []
    store.cancels.request_cancel("f1")
    store.cancels.request_cancel("f1")  # asked twice: one request
    store.cancels.request_cancel("f2")
    assert store.cancels.cancel_requests() == ["f1", "f2"]
    store.cancels.cancelled("f1")
    assert store.cancels.cancel_requests() == ["f2"]
    store.add_spare("x1", ["q.a"], owner="s2")
    store.add_spare("x2", ["q.b"], owner="s1")
    assert [s[0] for s in store.spares(["s2"])] == ["x1"]
