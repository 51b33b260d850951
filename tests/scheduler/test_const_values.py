"""Const values are the json_format form of their port's type, with no wrapper; a plain
scalar stands for a message of one scalar field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.errors import FlowInvalid
from executor.pb.dagyo import types_pb2
from executor.progdef import load_catalogue, parse_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.model import Endpoint, parse_flow

ROOT = Path(__file__).parents[2]
TAKES = {
    typename: parse_progdef(
        {
            "name": f"take-{short.lower()}",
            "inputs": {"x": typename},
            "outputs": {},
            "run": "main:run",
        }
    )
    for short, typename in (
        ("Text", "dagyo.types.Text"),
        ("Int64", "dagyo.types.Int64"),
        ("Float64", "dagyo.types.Float64"),
        ("TextPair", "dagyo.types.TextPair"),
    )
}
CATALOGUE = {**load_catalogue(ROOT / "progdefs"), **{p.name: p for p in TAKES.values()}}


def flow_feeding(typename: str, values: list[Any]) -> str:
    name = TAKES[typename].name
    return json.dumps(
        {
            "name": "c",
            "nodes": {"t": {"progdef": name}},
            "consts": [{"to": "t.x", "values": values}],
        }
    )


@pytest.mark.parametrize(
    ("typename", "values", "expected"),
    [
        ("dagyo.types.Text", [{"text": "x"}, "y"], ["x", "y"]),
        ("dagyo.types.Int64", [{"value": 3}, 4, {"value": "5"}], [3, 4, 5]),
        ("dagyo.types.Float64", [{"value": 1.5}, 2.5], [1.5, 2.5]),
        ("dagyo.types.TextPair", [{"a": "x", "b": "y"}], [("x", "y")]),
    ],
    ids=["text", "int64", "float64", "textpair"],
)
def test_a_const_is_its_json_form_or_a_scalar(
    typename: str, values: list[Any], expected: list[Any]
) -> None:
    text = flow_feeding(typename, values)
    checked = check_flow(parse_flow(text), CATALOGUE)

    items = checked.const_items[Endpoint("t", "x")]
    decoded = [getattr(types_pb2, typename.rsplit(".", 1)[1]).FromString(i) for i in items]
    if typename.endswith("TextPair"):
        assert [(m.a, m.b) for m in decoded] == expected
    elif typename.endswith("Text"):
        assert [m.text for m in decoded] == expected
    else:
        assert [m.value for m in decoded] == expected


def test_a_const_of_the_wrong_shape_names_the_const_the_value_and_the_error() -> None:
    flow = {
        "name": "c",
        "nodes": {"cp": {"progdef": "unordered_cartesian_product"}, "v": {"progdef": "void_sink"}},
        "edges": [{"from": "cp.pairs", "to": "v.sink"}],
        "consts": [
            {"to": "cp.a", "values": [{"value": {"text": "x"}}]},
            {"to": "cp.b", "values": [{"text": "y"}]},
        ],
    }
    with pytest.raises(FlowInvalid) as caught:
        check_flow(parse_flow(json.dumps(flow), source="c.json"), CATALOGUE, source="c.json")

    assert len(caught.value.problems) == 1
    line = caught.value.problems[0]
    assert line.startswith(
        'c.json: const to cp.a: value 1 ({"value":{"text":"x"}}) is not the JSON form of '
        "dagyo.types.Text: "
    )
    assert 'no field named "value"' in line
