"""Consts given at submit: `--set NODE.PORT=JSON` for `dagyo run` and `dagyo flow submit`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.errors import FlowInvalid
from scheduler.flow.overrides import apply_sets, parse_set
from tests.cluster import LocalCluster
from tests.commands import run_dagyo
from tests.conftest import ROOT

HELLO = ROOT / "examples" / "hello.json"


def greetings(stdout: str) -> list[str]:
    return [json.loads(line)["value"]["text"] for line in stdout.splitlines()]


def test_run_set_replaces_a_const_with_one_item_or_a_list() -> None:
    done = run_dagyo("run", str(HELLO), "--set", "names.count=2")
    assert (done.returncode, greetings(done.stdout)) == (0, ["hello name-0", "hello name-1"])
    done = run_dagyo("run", str(HELLO), "--set", "names.count=[1, 2]")
    assert greetings(done.stdout) == ["hello name-0", "hello name-0", "hello name-1"]


def test_set_supplies_a_missing_const_checked_like_any_other(tmp_path: Path) -> None:
    flow = json.loads(HELLO.read_text())
    del flow["consts"]
    path = tmp_path / "open.json"
    path.write_text(json.dumps(flow))
    missing = run_dagyo("run", str(path))
    assert missing.returncode == 2 and "names.count: input has no source" in missing.stderr
    done = run_dagyo("run", str(path), "--set", 'names.count={"value": 1}')
    assert (done.returncode, greetings(done.stdout)) == (0, ["hello name-0"])
    wrong = run_dagyo("run", str(path), "--set", 'names.count="x"')
    assert wrong.returncode == 2
    assert '--set names.count: value 1 ("x") is not the JSON form of dagyo.types.Int64' in (
        wrong.stderr
    )


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ('names.count="x"', 'value 1 ("x") is not the JSON form of dagyo.types.Int64'),
        ("names.cuont=3", "names.cuont: no such input on progdef source (did you mean 'count'?)"),
        ("names.count=null", "null is no item"),
    ],
    ids=["wrong-type", "no-such-input", "null"],
)
def test_a_bad_set_is_blamed_on_set_not_on_the_flow_file(option: str, problem: str) -> None:
    done = run_dagyo("run", str(HELLO), "--set", option)
    target = option.partition("=")[0]
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"dagyo: --set {target}: "), line
    assert problem in line and "hello.json" not in line, line


@pytest.mark.parametrize(
    ("option", "message"),
    [("nope", "write NODE.PORT=JSON"), ("names.count=abc", "malformed JSON")],
)
def test_a_malformed_set_names_itself(option: str, message: str) -> None:
    with pytest.raises(FlowInvalid, match=message):
        parse_set(option)
    done = run_dagyo("run", str(HELLO), "--set", option)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_apply_sets_leaves_other_consts_alone() -> None:
    text = json.dumps({"consts": [{"to": "a.x", "values": [1]}, {"to": "b.y", "values": [2]}]})
    assert json.loads(apply_sets(text, ["b.y=[3, 4]"]))["consts"] == [
        {"to": "a.x", "values": [1]},
        {"to": "b.y", "values": [3, 4]},
    ]


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        broker_url, tmp_path_factory.mktemp("sets"), names=("source", "greet", "void_sink")
    ).start()
    yield cluster
    cluster.close()


def test_submit_set_goes_to_the_scheduler(cluster: LocalCluster) -> None:
    assert cluster.scheduler is not None
    done = run_dagyo(
        "flow",
        "submit",
        str(HELLO),
        "--wait",
        "--set",
        "names.count=1",
        env={"DAGYO_SCHEDULER": cluster.scheduler.address},
    )
    assert (done.returncode, greetings(done.stdout)) == (0, ["hello name-0"]), done.stderr


def test_a_bad_set_on_submit_is_blamed_on_set(cluster: LocalCluster) -> None:
    assert cluster.scheduler is not None
    done = run_dagyo(
        "flow",
        "submit",
        str(HELLO),
        "--set",
        'names.count="x"',
        env={"DAGYO_SCHEDULER": cluster.scheduler.address},
    )
    assert done.returncode == 2, done.stderr
    assert '--set names.count: value 1 ("x") is not the JSON form' in done.stderr, done.stderr
    assert "const to names.count" not in done.stderr, done.stderr
