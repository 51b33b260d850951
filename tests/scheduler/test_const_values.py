"""Const values are the json_format form of their port's type, with no wrapper; a plain
scalar stands for a message of one scalar field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import FlowInvalid
from executor.core.progdef import load_catalogue, parse_progdef
from executor.pb.dagyo import types_pb2
from scheduler.flow.check import check_flow
from scheduler.flow.model import Endpoint
from scheduler.flow.parse import parse_flow
from tests.scheduler.checking import check, hello, problems, with_progdefs

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


# --- consts in a whole flow ---------------------------------------------------------------


def test_a_const_value_may_be_the_full_json_form_or_the_single_field() -> None:
    full = check(hello(consts=[{"to": "names.count", "values": [{"value": 3}]}]))
    short = check(hello(consts=[{"to": "names.count", "values": [3]}]))

    assert full.const_items == short.const_items


def test_a_text_const_is_its_json_form_or_a_plain_string() -> None:
    doc = hello()
    doc["consts"].append({"to": "hi.name", "values": [{"text": "x"}, "y"]})
    doc["edges"].pop(0)
    doc["exports"]["names"] = "names.src"

    items = check(doc).const_items[Endpoint("hi", "name")]

    assert [types_pb2.Text.FromString(item).text for item in items] == ["x", "y"]


def test_a_string_to_an_int64_const_is_an_error_naming_the_value() -> None:
    doc = hello(consts=[{"to": "names.count", "values": [2, "abc"]}])

    [problem] = problems(doc)

    assert problem.startswith(
        'hello.json: const to names.count: value 2 ("abc") is not the JSON form of '
        "dagyo.types.Int64: "
    )
    assert problem.endswith("; dagyo.types.Int64 has the fields value: int64")


def test_a_const_with_an_unknown_field_names_the_field() -> None:
    doc = hello(consts=[{"to": "names.count", "values": [{"valu": 3}]}])

    [problem] = problems(doc)

    assert problem.startswith(
        'hello.json: const to names.count: value 1 ({"valu":3}) is not the JSON form of '
        "dagyo.types.Int64: "
    )
    assert 'no field named "valu"' in problem


def test_a_const_list_instead_of_an_object_is_an_error() -> None:
    doc = hello()
    doc["consts"].append({"to": "hi.name", "values": [["Ada"]]})
    doc["edges"].pop(0)
    doc["exports"]["names"] = "names.src"

    [problem] = problems(doc)

    assert problem.startswith(
        'hello.json: const to hi.name: value 1 (["Ada"]) is not the JSON form of dagyo.types.Text: '
    )


def test_a_const_that_is_not_an_object_for_a_type_of_several_fields() -> None:
    catalogue = with_progdefs(
        {"name": "pairs", "inputs": {"pairs": "dagyo.types.TextPair"}, "outputs": {}}
    )
    doc = {
        "name": "p",
        "nodes": {"p": {"progdef": "pairs"}},
        "consts": [{"to": "p.pairs", "values": [{"a": "x", "b": "y"}, []]}],
    }

    assert problems(doc, catalogue) == [
        "hello.json: const to p.pairs: value 2 ([]) is not the JSON form of dagyo.types.TextPair:"
        " expected an object, got []; dagyo.types.TextPair has the fields a: string, b: string"
    ]


def test_const_values_take_no_wrapper_and_null_is_no_item() -> None:
    values = [{"valeu": 3}, {"value": {"value": 3}}, None]
    doc = hello(consts=[{"to": "names.count", "values": values}])

    assert problems(doc) == [
        "hello.json: const 1: value 3: null is no item: write the item in the JSON form of the "
        'port\'s type, e.g. {"text": "Ada"}, or as a scalar for a type of one field: "Ada", 3'
    ]
    first, second = problems(hello(consts=[{"to": "names.count", "values": values[:2]}]))
    where = "hello.json: const to names.count"
    assert first.startswith(f'{where}: value 1 ({{"valeu":3}}) is not the JSON form of ')
    assert 'no field named "valeu"' in first
    assert second.startswith(f'{where}: value 2 ({{"value":{{"value":3}}}}) is not the JSON form')
