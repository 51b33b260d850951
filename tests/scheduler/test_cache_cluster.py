"""The scheduler caches the results of deterministic nodes: on a real cluster (the scheduler,
executors, the broker), a node whose results are cached for the caller's tenant is not run
again, its streams are replayed; what changes upstream, a failed flow, a damaged entry, a
new version, another tenant and --no-cache all make nodes run."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.core.progdef import load_catalogue
from scheduler.local_cluster import LocalCluster
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import CacheBounds, SchedulerSettings
from tests.cluster import copy_catalogue
from tests.commands import run_dagyo
from tests.scheduler.fake_executor import queues_by_flow
from tests.tally import TALLY, TALLY_CODE
from tests.waiting import eventually

pytestmark = pytest.mark.slow

# DAGYO_CACHE_MAX_BYTES of the module's scheduler.
MAX_OUTPUT_BYTES = 100_000

TOKENS = {
    "alice": Principal("team-a", "user", Quotas()),
    "bob": Principal("team-b", "user", Quotas()),
    "carol": Principal("team-c", "user", Quotas(max_export_items=1)),
    "root": Principal("ops", "admin", Quotas()),
}


class Cluster:
    """The module's cluster, and the file its tally writes to."""

    def __init__(self, local: LocalCluster, workdir: Path, tally_file: Path) -> None:
        self.local = local
        self.workdir = workdir
        self.tally_file = tally_file
        self.state = workdir / "state.sqlite3"

    def env(self, token: str = "alice") -> dict[str, str]:
        return {"DAGYO_SCHEDULER": self.local.address, "DAGYO_TOKEN": token}

    def dagyo(self, *args: str, token: str = "alice") -> subprocess.CompletedProcess[str]:
        return run_dagyo(*args, env=self.env(token))

    def submit(
        self, flow: dict[str, Any], *args: str, token: str = "alice", status: int = 0
    ) -> tuple[str, list[dict[str, Any]]]:
        """Submit and wait: the flow id and its exports, sorted."""
        path = self.workdir / f"flow-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(flow))
        done = self.dagyo("flow", "submit", str(path), "--wait", *args, token=token)
        assert done.returncode == status, done.stderr
        flow_id = done.stderr.strip().splitlines()[0].split()[-1]
        exports = [json.loads(line) for line in done.stdout.splitlines()]
        return flow_id, sorted(exports, key=lambda e: (e["export"], json.dumps(e["value"])))

    def nodes(self, flow_id: str, token: str = "alice") -> dict[str, dict[str, Any]]:
        done = self.dagyo("flow", "status", flow_id, "--json", token=token)
        return {node["node"]: node for node in json.loads(done.stdout)["nodes"]}

    def tallied(self) -> list[str]:
        """The items tally handled so far, sorted, and forget them."""
        if not self.tally_file.exists():
            return []
        lines = self.tally_file.read_text().splitlines()
        self.tally_file.unlink()
        return sorted(lines)

    def entries(self, token: str = "alice") -> list[dict[str, Any]]:
        done = self.dagyo("cache", "list", "--json", token=token)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cache-cluster")
    catalogue = copy_catalogue(workdir / "progdefs", ("source", "greet", "explode", "slow"))
    (catalogue / "tally").mkdir()
    (catalogue / "tally" / "progdef.json").write_text(json.dumps(TALLY))
    (catalogue / "tally" / "main.py").write_text(TALLY_CODE)
    (catalogue / "tally" / "VERSION").write_text(f"test-{uuid.uuid4().hex[:12]}\n")
    tokens = workdir / "tokens.json"
    tokens.write_text(tokens_json({token_digest(t): p for t, p in TOKENS.items()}))
    settings = SchedulerSettings(
        queue_url=broker_url,
        address="127.0.0.1:0",
        state_path=str(workdir / "state.sqlite3"),
        progdefs=catalogue,
        heartbeat_timeout_s=4.0,
        metrics_port=0,
        tokens_path=str(tokens),
        cache_bounds=CacheBounds(max_output_bytes=MAX_OUTPUT_BYTES),
    )
    tally_file = workdir / "tally.txt"
    local = LocalCluster.from_settings(
        settings,
        extra_env={"DAGYO_TEST_TALLY": str(tally_file), "DAGYO_HEARTBEAT_INTERVAL_S": "0.5"},
    )
    try:
        local.start()
        yield Cluster(local, workdir, tally_file)
    finally:
        local.stop()
        local.delete_mailboxes()


def tallies(a: str, b: str) -> dict[str, Any]:
    """ta and tb, each fed by a const of one item, exported as ``a`` and ``b``."""
    return {
        "name": "tallies",
        "nodes": {"ta": {"progdef": "tally"}, "tb": {"progdef": "tally"}},
        "edges": [],
        "consts": [{"to": "ta.text", "values": [a]}, {"to": "tb.text", "values": [b]}],
        "exports": {"a": "ta.upper", "b": "tb.upper"},
    }


def text(value: str) -> dict[str, Any]:
    return {"text": value}


def test_a_cached_region_runs_no_job_and_a_changed_const_reruns_only_what_is_below_it(
    cluster: Cluster,
) -> None:
    first_id, first = cluster.submit(tallies("r1", "s1"))
    assert cluster.tallied() == ["r1", "s1"]
    second_id, second = cluster.submit(tallies("r1", "s1"))
    assert (
        second
        == first
        == [
            {"export": "a", "value": text("R1")},
            {"export": "b", "value": text("S1")},
        ]
    )
    assert cluster.tallied() == []  # no job ran
    nodes = cluster.nodes(second_id)
    assert {n["state"] for n in nodes.values()} == {"cached"}
    assert nodes["ta"]["items_sent"] == 1
    _, changed = cluster.submit(tallies("r2", "s1"))
    assert changed == [{"export": "a", "value": text("R2")}, {"export": "b", "value": text("S1")}]
    assert cluster.tallied() == ["r2"]
    made = {e["node"]: e for e in cluster.entries() if e["flow"] == first_id}
    assert set(made) == {"ta", "tb"}
    assert made["ta"]["progdef"] == "tally" and made["ta"]["hits"] == 1


def test_a_cached_node_is_replayed_into_a_consumer_that_runs(cluster: Cluster) -> None:
    # explode is not deterministic: it runs every time, fed from tally's cached stream;
    # and tally below it is never cacheable.
    flow = {
        "name": "replay",
        "nodes": {
            "t": {"progdef": "tally"},
            "e": {"progdef": "explode"},
            "below": {"progdef": "tally"},
        },
        "edges": [{"from": "t.upper", "to": "e.items"}, {"from": "e.items", "to": "below.text"}],
        "consts": [{"to": "t.text", "values": [f"q{n}" for n in range(2000)]}],
        "exports": {"below": "below.upper", "t": "t.upper"},
    }
    _, first = cluster.submit(flow)
    assert len(cluster.tallied()) == 4000
    flow_id, second = cluster.submit(flow)
    assert second == first
    assert len(first) == 4000
    assert cluster.tallied() == sorted(f"Q{n}" for n in range(2000))  # `below` alone ran
    nodes = cluster.nodes(flow_id)
    assert (nodes["t"]["state"], nodes["e"]["state"], nodes["below"]["state"]) == (
        "cached",
        "ended",
        "ended",
    )
    assert nodes["e"]["items_received"] == 2000


def test_a_recording_queue_records_and_a_cached_nodes_unused_one_is_left_behind_by_none(
    cluster: Cluster, broker_url: str
) -> None:
    # t.upper has no export: it is recorded from a queue of its own, which its flow still
    # has (unused) once t is cached; an output exported twice is stored once.
    flow = {
        "name": "recorded",
        "nodes": {"t": {"progdef": "tally"}, "e": {"progdef": "explode"}},
        "edges": [{"from": "t.upper", "to": "e.items"}],
        "consts": [{"to": "t.text", "values": ["u1", "u2"]}],
        "exports": {"e": "e.items"},
    }
    first_id, first = cluster.submit(flow)
    assert cluster.tallied() == ["u1", "u2"]
    second_id, second = cluster.submit(flow)
    assert second == first == [{"export": "e", "value": text(v)} for v in ("U1", "U2")]
    assert cluster.tallied() == []
    assert cluster.nodes(second_id)["t"]["state"] == "cached"
    left = queues_by_flow(broker_url)
    assert first_id not in left and second_id not in left, left
    twice = tallies("w1", "w2")
    twice["exports"]["again"] = "ta.upper"
    made_id, _ = cluster.submit(twice)
    assert sorted(e["node"] for e in cluster.entries() if e["flow"] == made_id) == ["ta", "tb"]
    cluster.tallied()
    _, again = cluster.submit(twice)
    assert [e["export"] for e in again] == ["a", "again", "b"]
    assert cluster.tallied() == []


def test_an_export_past_its_cap_is_still_recorded_whole(cluster: Cluster) -> None:
    # carol's record keeps one export item; the scheduler reads (and records) them all:
    # the next run replays t's whole stream into e, and `below` (never cacheable) gets it.
    flow = {
        "name": "capped",
        "nodes": {
            "t": {"progdef": "tally"},
            "e": {"progdef": "explode"},
            "below": {"progdef": "tally"},
        },
        "edges": [{"from": "t.upper", "to": "e.items"}, {"from": "e.items", "to": "below.text"}],
        "consts": [{"to": "t.text", "values": ["c1", "c2", "c3"]}],
        "exports": {"t": "t.upper", "below": "below.upper"},
    }
    path = cluster.workdir / "capped.json"
    path.write_text(json.dumps(flow))
    # exit 5 when the watch began after exports it could no longer see were dropped
    done = cluster.dagyo("flow", "submit", str(path), "--wait", token="carol")
    assert done.returncode in (0, 5), done.stderr
    first_id = done.stderr.strip().splitlines()[0].split()[-1]
    status = cluster.dagyo("flow", "status", first_id, token="carol").stdout
    assert "succeeded" in status and "exports kept: 1 (5 not kept" in status, status
    assert cluster.tallied() == ["C1", "C2", "C3", "c1", "c2", "c3"]
    made = [e["node"] for e in cluster.entries(token="carol") if e["flow"] == first_id]
    assert made == ["t"]
    done = cluster.dagyo("flow", "submit", str(path), "--wait", token="carol")
    assert done.returncode in (0, 5), done.stderr
    second_id = done.stderr.strip().splitlines()[0].split()[-1]
    assert cluster.nodes(second_id, token="carol")["t"]["state"] == "cached"
    assert cluster.tallied() == ["C1", "C2", "C3"]  # below alone ran, on the whole stream


def test_a_failed_cancelled_or_late_flow_leaves_no_entry(cluster: Cluster) -> None:
    panics = {
        "name": "panics",
        "nodes": {"t": {"progdef": "tally"}, "x": {"progdef": "explode"}},
        "edges": [],
        "consts": [{"to": "t.text", "values": ["f1"]}, {"to": "x.items", "values": ["panic"]}],
        "exports": {"t": "t.upper", "x": "x.items"},
    }
    cluster.submit(panics, status=1)
    slow: dict[str, Any] = {
        "name": "slow",
        "nodes": {"t": {"progdef": "tally"}, "s": {"progdef": "slow"}},
        "edges": [{"from": "t.upper", "to": "s.items"}],
        "consts": [{"to": "t.text", "values": ["f2"]}, {"to": "s.delay_ms", "values": [60000]}],
        "exports": {"t": "t.upper", "s": "s.items"},
    }
    cluster.submit(slow, "--deadline", "3", status=1)
    path = cluster.workdir / "slow.json"
    slow["consts"][0]["values"] = ["f3"]
    path.write_text(json.dumps(slow))
    flow_id = cluster.dagyo("flow", "submit", str(path)).stdout.strip()
    eventually(lambda: cluster.tally_file.exists() and "f3" in cluster.tally_file.read_text())
    assert cluster.dagyo("flow", "cancel", flow_id).returncode == 0
    cluster.tallied()
    for value in ("f1", "f2", "f3"):
        cluster.submit(tallies(value, "f0"))
    assert cluster.tallied() == ["f0", "f1", "f2", "f3"]


def test_a_corrupted_entry_is_detected_and_its_node_runs(cluster: Cluster) -> None:
    first_id, first = cluster.submit(tallies("c1", "c2"))
    assert cluster.tallied() == ["c1", "c2"]
    (key,) = [e["key"] for e in cluster.entries() if e["flow"] == first_id and e["node"] == "ta"]
    with sqlite3.connect(cluster.state) as db:
        db.execute("UPDATE cache_streams SET data = CAST('garbage' AS BLOB) WHERE key = ?", (key,))
    _, again = cluster.submit(tallies("c1", "c2"))
    assert again == first
    assert cluster.tallied() == ["c1"]  # ta ran; tb was replayed
    _, third = cluster.submit(tallies("c1", "c2"))
    assert third == first and cluster.tallied() == []  # the entry was made again


def test_a_node_below_a_damaged_entry_replays_what_it_reads(cluster: Cluster) -> None:
    chain = {
        "name": "chain",
        "nodes": {"top": {"progdef": "tally"}, "low": {"progdef": "tally"}},
        "edges": [{"from": "top.upper", "to": "low.text"}],
        "consts": [{"to": "top.text", "values": ["d1", "d2"]}],
        "exports": {"low": "low.upper"},
    }
    first_id, first = cluster.submit(chain)
    assert cluster.tallied() == ["D1", "D2", "d1", "d2"]
    (key,) = [e["key"] for e in cluster.entries() if e["flow"] == first_id and e["node"] == "low"]
    with sqlite3.connect(cluster.state) as db:
        db.execute("UPDATE cache_streams SET data = substr(data, 1, 3) WHERE key = ?", (key,))
    flow_id, again = cluster.submit(chain)
    assert again == first
    assert cluster.tallied() == ["D1", "D2"]  # low ran, on top's stream replayed
    nodes = cluster.nodes(flow_id)
    assert (nodes["top"]["state"], nodes["low"]["state"]) == ("cached", "ended")


def test_two_identical_flows_at_once_both_succeed_alike(cluster: Cluster) -> None:
    results: list[list[dict[str, Any]]] = []

    def submit() -> None:
        results.append(cluster.submit(tallies("w1", "w2"))[1])

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1] == [
        {"export": "a", "value": text("W1")},
        {"export": "b", "value": text("W2")},
    ]
    cluster.tallied()
    assert cluster.submit(tallies("w1", "w2"))[1] == results[0]
    assert cluster.tallied() == []


def test_tenants_neither_share_nor_see_each_others_entries(cluster: Cluster) -> None:
    alice_id, alice = cluster.submit(tallies("t1", "t2"), token="alice")
    assert cluster.tallied() == ["t1", "t2"]
    bob_id, bob = cluster.submit(tallies("t1", "t2"), token="bob")
    assert bob == alice
    assert cluster.tallied() == ["t1", "t2"]  # alice's entries are not bob's
    assert {e["flow"] for e in cluster.entries("bob")} == {bob_id}
    assert alice_id not in {e["flow"] for e in cluster.entries("bob")}
    every = {e["flow"] for e in cluster.entries("root")}
    assert {alice_id, bob_id} <= every
    dropped = cluster.dagyo("cache", "drop", token="bob")
    assert dropped.returncode == 0 and "dropped 2 cached results" in dropped.stderr
    assert cluster.entries("bob") == []
    assert alice_id in {e["flow"] for e in cluster.entries("alice")}


def test_no_cache_runs_everything_and_drop_makes_nodes_run(cluster: Cluster) -> None:
    first_id, first = cluster.submit(tallies("n1", "n2"))
    assert cluster.tallied() == ["n1", "n2"]
    refreshed_id, again = cluster.submit(tallies("n1", "n2"), "--no-cache")
    assert again == first and cluster.tallied() == ["n1", "n2"]
    assert {e["flow"] for e in cluster.entries() if e["node"] == "ta"} & {
        first_id,
        refreshed_id,
    } == {refreshed_id}
    (key,) = [
        e["key"] for e in cluster.entries() if e["flow"] == refreshed_id and e["node"] == "ta"
    ]
    assert cluster.dagyo("cache", "drop", key).returncode == 0
    cluster.submit(tallies("n1", "n2"))
    assert cluster.tallied() == ["n1"]
    assert cluster.dagyo("cache", "drop", "tally@nope").returncode == 0
    cluster.submit(tallies("n1", "n2"))
    assert cluster.tallied() == []


def test_a_new_progdef_version_misses(cluster: Cluster) -> None:
    cluster.submit(tallies("v1", "v2"))
    cluster.tallied()
    folder = cluster.local.settings.progdefs
    assert isinstance(folder, Path)
    (folder / "tally" / "VERSION").write_text(f"test-{uuid.uuid4().hex[:12]}\n")
    upgraded = load_catalogue(folder)["tally"]
    cluster.local.start_executor(upgraded)
    scheduler = cluster.local.scheduler
    assert scheduler is not None
    eventually(
        lambda: scheduler.catalogue()["tally"].version == upgraded.version,
        what="the scheduler reading the new version",
    )
    eventually(
        lambda: cluster.submit(tallies("v1", "v2")),
        60,
        ignoring=(AssertionError,),
        what="a submit on the new version",
    )
    assert cluster.tallied() == ["v1", "v2"]


def test_an_output_past_the_bound_is_not_cached_and_a_line_says_so(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    flow = tallies("m1", "m2")
    items = MAX_OUTPUT_BYTES // 40  # of 50 bytes each, as recorded
    flow["consts"][0]["values"] = [f"m{n:05}{'x' * 40}" for n in range(items)]
    with caplog.at_level(logging.WARNING, logger="dagyo.cache"):
        first_id, first = cluster.submit(flow)
    assert f"flow {first_id}: output ta.upper is not cached: past DAGYO_CACHE_MAX_BYTES" in (
        caplog.text
    )
    assert len(cluster.tallied()) == items + 1
    _, again = cluster.submit(flow)
    assert again == first
    assert len(cluster.tallied()) == items  # ta ran again; tb was cached
