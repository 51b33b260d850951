"""`dagyo run` caches the results of deterministic nodes: a node whose results are cached
is not run again, its streams are replayed; what changes upstream, a failed flow, a damaged
entry and --no-cache all make nodes run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from executor.core.progdef import load_catalogue
from scheduler.cache import CacheSettings, Entry, FolderCache
from scheduler.embedded import EmbeddedRunner, RunResult
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.commands import run_dagyo
from tests.conftest import PROGDEFS, ROOT
from tests.tally import TALLY, TALLY_CODE
from tests.waiting import eventually

CATALOGUE = load_catalogue(PROGDEFS)


@pytest.fixture
def tally(tmp_path: Path) -> dict[str, Any]:
    """The catalogue folder holding ``tally``, and the file it writes to."""
    folder = tmp_path / "catalogue" / "tally"
    folder.mkdir(parents=True)
    (folder / "progdef.json").write_text(json.dumps(TALLY))
    (folder / "main.py").write_text(TALLY_CODE)
    return {"catalogue": folder.parent, "file": tmp_path / "tally.txt"}


def two_tallies(a: str = "a1", b: str = "b1", **extra_nodes: Any) -> dict[str, Any]:
    """ta and tb, each fed by a const of one item, exported as ``a`` and ``b``."""
    return {
        "name": "tallies",
        "nodes": {"ta": {"progdef": "tally"}, "tb": {"progdef": "tally"}, **extra_nodes},
        "edges": [],
        "consts": [{"to": "ta.text", "values": [a]}, {"to": "tb.text", "values": [b]}],
        "exports": {"a": "ta.upper", "b": "tb.upper"},
    }


def run(
    tally: dict[str, Any], tmp_path: Path, flow: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    return run_dagyo(
        "run",
        str(path),
        "--progdefs",
        str(tally["catalogue"]),
        "--progdefs",
        str(PROGDEFS),
        *args,
        env={"DAGYO_TEST_TALLY": str(tally["file"])},
    )


def tallied(tally: dict[str, Any]) -> list[str]:
    """The items tally handled so far, in order, and forget them."""
    file: Path = tally["file"]
    if not file.exists():
        return []
    lines = file.read_text().splitlines()
    file.unlink()
    return sorted(lines)


def entries() -> list[dict[str, Any]]:
    result = run_dagyo("cache", "list", "--local", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_deterministic_node_runs_once_across_two_identical_runs(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    first = run(tally, tmp_path, two_tallies())
    assert first.returncode == 0, first.stderr
    assert tallied(tally) == ["a1", "b1"]

    second = run(tally, tmp_path, two_tallies())

    assert second.returncode == 0, second.stderr
    assert tallied(tally) == []
    assert sorted(second.stdout.splitlines()) == sorted(first.stdout.splitlines())
    assert sorted(first.stdout.splitlines()) == [
        '{"export": "a", "value": {"text": "A1"}}',
        '{"export": "b", "value": {"text": "B1"}}',
    ]
    assert sorted((e["node"], e["hits"]) for e in entries()) == [("ta", 1), ("tb", 1)]


def test_changing_one_const_runs_exactly_the_nodes_downstream_of_it(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    assert run(tally, tmp_path, two_tallies(a="a1")).returncode == 0
    tallied(tally)

    changed = run(tally, tmp_path, two_tallies(a="a2"))

    assert changed.returncode == 0, changed.stderr
    assert tallied(tally) == ["a2"]
    assert '{"export": "a", "value": {"text": "A2"}}' in changed.stdout.splitlines()


def test_a_flow_with_a_panic_leaves_no_entry(tally: dict[str, Any], tmp_path: Path) -> None:
    panicking = two_tallies(boom={"progdef": "explode"})
    panicking["consts"].append({"to": "boom.items", "values": ["panic now"]})
    panicking["exports"]["boom"] = "boom.items"

    failed = run(tally, tmp_path, panicking)

    assert failed.returncode == 1
    assert entries() == []
    tallied(tally)
    assert run(tally, tmp_path, two_tallies()).returncode == 0
    assert tallied(tally) == ["a1", "b1"]


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_entry_is_detected_and_its_node_runs(
    tally: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    assert run(tally, tmp_path, two_tallies()).returncode == 0
    tallied(tally)
    entry = next(e for e in entries() if e["node"] == "ta")
    items = Path(os.environ["DAGYO_CACHE_DIR"]) / entry["key"] / "upper.items"
    data = items.read_bytes()
    items.write_bytes(data[:-1] + b"X" if damage == "corrupted" else data[:-1])

    again = run(tally, tmp_path, two_tallies())

    assert again.returncode == 0, again.stderr
    assert tallied(tally) == ["a1"]
    assert '{"export": "a", "value": {"text": "A1"}}' in again.stdout.splitlines()
    assert f"cache entry {entry['key']} (progdef tally, node ta)" in again.stderr


def test_no_cache_runs_every_node_and_refreshes_the_entries(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    assert run(tally, tmp_path, two_tallies()).returncode == 0
    tallied(tally)
    made = {e["node"]: e["made"] for e in entries()}

    again = run(tally, tmp_path, two_tallies(), "--no-cache")

    assert again.returncode == 0, again.stderr
    assert tallied(tally) == ["a1", "b1"]
    assert all(e["made"] > made[e["node"]] for e in entries())


def test_an_output_past_dagyo_cache_max_bytes_is_not_cached_and_a_line_says_so(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    flow = two_tallies(b="b" * 100)
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    env = {"DAGYO_TEST_TALLY": str(tally["file"]), "DAGYO_CACHE_MAX_BYTES": "50"}
    args = ("run", str(path), "--progdefs", str(tally["catalogue"]))

    first = run_dagyo(*args, env=env)

    assert first.returncode == 0, first.stderr
    assert "tb.upper is past DAGYO_CACHE_MAX_BYTES (50 bytes): not cached" in first.stderr
    assert [e["node"] for e in entries()] == ["ta"]
    tallied(tally)
    assert run_dagyo(*args, env=env).returncode == 0
    assert tallied(tally) == ["b" * 100]


def test_dagyo_run_of_count_twice_replays_counts_output() -> None:
    first = run_dagyo("run", "examples/count.json")
    assert first.returncode == 0, first.stderr

    second = run_dagyo("run", "examples/count.json")

    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout == '{"export": "total", "value": {"value": "100000"}}\n'
    hits = {e["node"]: e["hits"] for e in entries()}
    assert hits == {"names": 1, "hi": 1, "total": 1}


def test_cache_drop_removes_the_entries_of_a_progdef_or_a_key(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    assert run(tally, tmp_path, two_tallies()).returncode == 0
    key = entries()[0]["key"]

    assert run_dagyo("cache", "drop", key, "--local").returncode == 0
    assert len(entries()) == 1
    assert run_dagyo("cache", "drop", "tally", "--local").returncode == 0
    assert entries() == []


def test_cache_without_local_asks_the_scheduler() -> None:
    result = run_dagyo("cache", "list", env={"DAGYO_SCHEDULER": "127.0.0.1:1"})

    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_the_result_and_the_progress_line_show_cached_nodes(tmp_path: Path) -> None:
    checked = check_flow(parse_flow((ROOT / "examples" / "count.json").read_text()), CATALOGUE)
    cache = FolderCache(CacheSettings(directory=tmp_path / "cache"))
    totals: list[Any] = []

    def run_once() -> tuple[EmbeddedRunner, RunResult]:
        runner = EmbeddedRunner(
            checked, on_export=lambda _, item: totals.append(item.value), cache=cache
        )
        return runner, runner.run()

    _, first = run_once()
    runner, second = run_once()

    assert (first.state, first.cached) == ("succeeded", ())
    assert (second.state, second.cached) == ("succeeded", ("names", "hi", "total"))
    assert totals == [100_000, 100_000]
    assert runner.progress_line() == {
        "names": "cached",
        "hi": "cached",
        "total.total": "1 cached",
    }


def test_the_least_recently_used_entries_go_past_dagyo_cache_bytes(tmp_path: Path) -> None:
    cache = FolderCache(CacheSettings(directory=tmp_path, max_bytes=250))

    def put(key: str) -> None:
        now = time.time()
        pending = cache.begin(Entry(key, "p", "v", "n", "f", made=now, last_used=now))
        pending.open("out")
        assert pending.write("out", b"x" * 96)
        assert cache.commit(pending) is not None

    put("used")
    put("unused")
    cache.touch(cache.lookup("used") or pytest.fail("no entry"))
    put("new")

    assert sorted(entry.key for entry in cache.entries()) == ["new", "used"]
    assert list(cache.items(cache.entries()[0], "out")) == [b"x" * 96]


def test_a_new_version_of_the_progdef_misses(tally: dict[str, Any], tmp_path: Path) -> None:
    assert run(tally, tmp_path, two_tallies()).returncode == 0
    tallied(tally)
    code = tally["catalogue"] / "tally" / "main.py"
    code.write_text(code.read_text() + "\n# version 2\n")

    again = run(tally, tmp_path, two_tallies())

    assert again.returncode == 0, again.stderr
    assert tallied(tally) == ["a1", "b1"]
    assert len(entries()) == 4


def test_two_identical_runs_at_once_both_succeed_with_the_same_exports(
    tally: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(two_tallies()))
    command = [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(path)]
    command += ["--progdefs", str(tally["catalogue"])]
    env = {**os.environ, "DAGYO_TEST_TALLY": str(tally["file"])}
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in runs]

    assert [process.returncode for process in runs] == [0, 0]
    assert sorted(outputs[0].splitlines()) == sorted(outputs[1].splitlines()) != []
    assert sorted((e["node"]) for e in entries()) == ["ta", "tb"]


def test_an_interrupted_run_leaves_no_entry(tally: dict[str, Any], tmp_path: Path) -> None:
    flow = two_tallies(wait={"progdef": "slow"})
    flow["edges"] = [{"from": "ta.upper", "to": "wait.items"}]
    flow["consts"].append({"to": "wait.delay_ms", "values": [120_000]})
    flow["exports"]["wait"] = "wait.items"
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    command = [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(path)]
    command += ["--progdefs", str(tally["catalogue"]), "--progdefs", str(PROGDEFS)]
    env = {**os.environ, "DAGYO_TEST_TALLY": str(tally["file"])}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    file: Path = tally["file"]
    eventually(lambda: file.exists() and len(file.read_text().splitlines()) == 2, timeout=60)

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=60) in (1, 130)  # failed (cancelled), or interrupted
    assert entries() == []
    assert not list(Path(os.environ["DAGYO_CACHE_DIR"]).glob(".pending-*"))
