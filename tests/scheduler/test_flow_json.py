"""The shape of Flow JSON as the user reads its problems: malformed text, unknown keys,
names, endpoints, files and the shipped schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import FlowInvalid
from scheduler.flow.parse import load_flow, parse_flow, schema_path
from tests.scheduler.checking import HELLO, hello, problems

# --- the shape of the JSON ----------------------------------------------------------------


def test_malformed_json_names_the_line_and_column() -> None:
    text = '{\n  "name": "hello",\n "nodes": {} "edges": []\n}'

    assert problems(text) == ["hello.json:3:14: malformed JSON: Expecting ',' delimiter"]


def test_json_nested_too_deeply_is_malformed_not_a_crash() -> None:
    assert problems("[" * 100_000) == ["hello.json: malformed JSON: nested too deeply"]


def test_the_top_level_must_be_an_object() -> None:
    assert problems("[]") == [
        "hello.json: expected a JSON object with a name and nodes, got a list"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d.update(nodse=d.pop("nodes")),
            "hello.json: unknown key 'nodse' (did you mean 'nodes'?); the keys are name, "
            "version, nodes, edges, consts, exports",
        ),
        (
            lambda d: d["nodes"]["hi"].update(progdf="greet"),
            "hello.json: node hi: unknown key 'progdf' (did you mean 'progdef'?); the keys are "
            "progdef",
        ),
        (
            lambda d: d["edges"][1].update(form="hi.greeting"),
            "hello.json: edge 2: unknown key 'form' (did you mean 'from'?); the keys are from, to",
        ),
        (
            lambda d: d["consts"][0].update(vaules=[]),
            "hello.json: const 1: unknown key 'vaules' (did you mean 'values'?); the keys are "
            "to, values",
        ),
    ],
    ids=["top", "node", "edge", "const"],
)
def test_unknown_keys_get_a_did_you_mean(change: Any, expected: str) -> None:
    doc = hello()
    change(doc)

    assert expected in problems(doc)


def test_a_missing_name_and_a_bad_version() -> None:
    doc = hello(version=2)
    del doc["name"]

    assert problems(doc) == [
        'hello.json: missing required key \'name\'; name the flow, e.g. "name": "hello"',
        "hello.json: version 2 is not supported: this dagyo reads flow JSON version 1; write "
        '"version": 1 or leave it out',
    ]


def test_names_must_match_the_name_pattern() -> None:
    doc = hello(name="Hello World", exports={"Greetings": "hi.greeting"})
    doc["nodes"]["Hi"] = doc["nodes"].pop("hi")

    rule = "must match ^[a-z][a-z0-9_-]{0,62}$ (lower case letters, digits, '_' and '-')"
    assert problems(doc) == [
        f'hello.json: name "Hello World" {rule}',
        f"hello.json: node 'Hi': a node name {rule}",
        f"hello.json: export 'Greetings': an export name {rule}",
    ]


def test_endpoints_must_be_node_dot_port() -> None:
    doc = hello(exports={"greetings": "hi"})
    doc["edges"][0]["from"] = "names"
    doc["edges"][1]["to"] = 7

    assert problems(doc) == [
        'hello.json: edge 1: from "names" is not of the form "node.port"; name an output as '
        'node.port, e.g. "hi.greeting"',
        'hello.json: edge 2: to 7 is not of the form "node.port"; name an input as node.port, '
        'e.g. "hi.name"',
        'hello.json: export greetings: "hi" is not of the form "node.port"; name an output as '
        'node.port, e.g. "hi.greeting"',
    ]


def test_wrong_json_types_are_named() -> None:
    doc = hello(edges={}, consts="none")
    doc["nodes"]["hi"] = {"progdef": 3}
    doc["nodes"]["out"] = "void_sink"

    assert problems(doc) == [
        "hello.json: node hi: progdef must be a string naming a progdef, got 3",
        'hello.json: node out: expected an object like {"progdef": "greet"}, got the string '
        '"void_sink"',
        'hello.json: edges must be a list of {"from": ..., "to": ...}, got an object',
        'hello.json: consts must be a list of {"to": ..., "values": ...}, got the string "none"',
    ]


def test_a_key_given_twice_is_an_error() -> None:
    text = json.dumps(HELLO).replace(
        '"hi": {"progdef": "greet"}', '"hi": {"progdef": "greet"}, "hi": {"progdef": "explode"}'
    )

    assert problems(text) == [
        "hello.json: key 'hi' appears twice in one object; rename or remove one"
    ]


# --- files and schemas --------------------------------------------------------------------


def test_load_flow_names_the_file_in_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "hello.json"
    path.write_text('{"name": "hello", "nodes": []}')

    with pytest.raises(FlowInvalid) as info:
        load_flow(path)

    assert info.value.problems == [
        f'{path}: nodes must be an object of name -> {{"progdef": ...}}, got a list'
    ]


def test_load_flow_of_a_missing_file_is_flow_invalid(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"

    with pytest.raises(FlowInvalid) as info:
        load_flow(path)

    assert info.value.problems == [f"{path}: cannot read the flow file: No such file or directory"]


def test_schema_path_finds_the_shipped_schemas() -> None:
    assert schema_path("flow").name == "flow.schema.json"
    assert schema_path("progdef").is_file()
    with pytest.raises(ValueError, match="the schemas are flow, progdef"):
        schema_path("job")


def test_a_flow_past_the_largest_size_is_refused_saying_the_limit() -> None:
    from scheduler.flow.model import MAX_FLOW_NODES

    nodes = {f"s{i}": {"progdef": "void_sink"} for i in range(MAX_FLOW_NODES + 1)}
    with pytest.raises(FlowInvalid) as refused:
        parse_flow(json.dumps({"name": "huge", "nodes": nodes}), source="huge.json")
    assert refused.value.problems == [
        f"huge.json: the flow has {MAX_FLOW_NODES + 1} nodes, more than the {MAX_FLOW_NODES} "
        "a flow may have (every node is a job, and all of a flow's jobs run at once): split it "
        "into several flows"
    ]
