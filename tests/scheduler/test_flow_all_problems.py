"""Every problem of a flow in one pass: an unknown key hides none of the others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.core.errors import FlowInvalid
from executor.core.progdef import load_catalogue
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow

ROOT = Path(__file__).parents[2]
CATALOGUE = load_catalogue(ROOT / "progdefs")

# Seven problems: three unknown keys, a typo of a progdef, a port that does not exist, an
# input with no source, a const of the wrong shape.
MANY = {
    "name": "many",
    "colour": "blue",
    "nodes": {
        "names": {"progdef": "source", "note": "x"},
        "hi": {"progdef": "gret"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [
        {"from": "names.src", "to": "out.snk", "via": "x"},
    ],
    "consts": [{"to": "names.count", "values": [{"value": "three"}]}],
}
EXPECTED = [
    "many.json: unknown key 'colour'; the keys are name, version, nodes, edges, consts, exports",
    "many.json: node names: unknown key 'note'; the keys are progdef",
    "many.json: edge 1: unknown key 'via'; the keys are from, to",
    "many.json: node hi: no progdef named 'gret' in the catalogue (did you mean 'greet'?)",
    "many.json: edge names.src -> out.snk: out.snk: no such input on progdef void_sink "
    "(did you mean 'sink'?)",
    "many.json: out.sink: input has no source",
    "many.json: const to names.count: value 1 (",
]


def test_a_flow_with_unknown_keys_reports_every_other_problem_at_once() -> None:
    text = json.dumps(MANY, indent=2)
    with pytest.raises(FlowInvalid) as caught:
        check_flow(parse_flow(text, source="many.json"), CATALOGUE, source="many.json")

    lines = caught.value.problems
    assert len(lines) == len(EXPECTED), "\n".join(lines)
    for line, expected in zip(lines, EXPECTED, strict=True):
        assert line.startswith(expected), line


def test_dagyo_validate_prints_them_all_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    path.write_text(json.dumps(MANY, indent=2))

    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(EXPECTED), done.stderr
    assert all(line.startswith(f"dagyo: {path}: ") for line in lines)


def test_only_unknown_keys_still_fail_the_check() -> None:
    doc = {
        "name": "hello",
        "nodse": {},
        "nodes": {"names": {"progdef": "source"}, "out": {"progdef": "void_sink"}},
        "edges": [{"from": "names.src", "to": "out.sink"}],
        "consts": [{"to": "names.count", "values": [{"value": 3}]}],
    }
    with pytest.raises(FlowInvalid) as caught:
        check_flow(parse_flow(json.dumps(doc), source="f.json"), CATALOGUE, source="f.json")
    assert caught.value.problems == [
        "f.json: unknown key 'nodse' (did you mean 'nodes'?); the keys are name, version, "
        "nodes, edges, consts, exports"
    ]
