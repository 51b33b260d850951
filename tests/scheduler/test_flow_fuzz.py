"""Random mutations of valid flows: the checker accepts them or explains, it never crashes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from executor.core.errors import FlowInvalid
from executor.core.progdef import is_type_variable, load_catalogue
from scheduler.flow.check import check_flow
from scheduler.flow.model import CheckedFlow, Endpoint
from scheduler.flow.parse import parse_flow, schema_path
from tests.scheduler.checking import HELLO

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "progdefs")
FLOW_SCHEMA = Draft202012Validator(json.loads(schema_path("flow").read_text()))
SOURCE = "fuzz.json"
PORT_NAMES = sorted(
    {port for progdef in CATALOGUE.values() for port in (*progdef.inputs, *progdef.outputs)}
)

VALID_FLOWS: list[dict[str, Any]] = [
    {"name": "empty"},
    {**HELLO, "version": 1},
    {
        "name": "chain",
        "nodes": {
            "names": {"progdef": "source"},
            "s": {"progdef": "slow"},
            "c": {"progdef": "count"},
            "e": {"progdef": "explode"},
        },
        "edges": [
            {"from": "names.src", "to": "s.items"},
            {"from": "s.items", "to": "e.items"},
            {"from": "s.items", "to": "c.items"},
        ],
        "consts": [
            {"to": "names.count", "values": [{"value": 2}, {"value": 1}]},
            {"to": "s.delay_ms", "values": [{"value": 5}]},
        ],
        "exports": {"total": "c.total", "items": "e.items"},
    },
    {
        "name": "pairs",
        "nodes": {
            "p": {"progdef": "unordered_cartesian_product"},
            "sink": {"progdef": "void_sink"},
        },
        "edges": [{"from": "p.pairs", "to": "sink.sink"}],
        "consts": [
            {"to": "p.a", "values": [{"text": "x"}, "y"]},
            {"to": "p.b", "values": []},
        ],
    },
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["hi", "names", "out", "x", "Hi", "", "a.b", "s", "c", "p"]) | st.text(
    max_size=6
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside document, parents before children."""
    children = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else []
    )
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def parent_of(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


def typo(word: str, data: st.DataObject) -> str:
    """A misspelling of word: a character dropped, doubled or changed, or upper case."""
    if not word:
        return "x"
    at = data.draw(st.integers(0, len(word) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "change", "upper"]))
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    if kind == "double":
        return word[:at] + word[at] * 2 + word[at + 1 :]
    if kind == "change":
        return word[:at] + data.draw(st.characters()) + word[at + 1 :]
    return word.upper()


def delete_key(document: dict[str, Any], data: st.DataObject) -> None:
    keys = [p for p in paths(document) if isinstance(parent_of(document, p), dict)]
    if keys:
        path = data.draw(st.sampled_from(keys))
        del parent_of(document, path)[path[-1]]


def rename_key(document: dict[str, Any], data: st.DataObject) -> None:
    keys = [p for p in paths(document) if isinstance(parent_of(document, p), dict)]
    if keys:
        path = data.draw(st.sampled_from(keys))
        parent = parent_of(document, path)
        parent[typo(str(path[-1]), data)] = parent.pop(path[-1])


def replace_value(document: dict[str, Any], data: st.DataObject) -> None:
    """Put a random JSON value anywhere: numbers where strings belong, lists for objects…"""
    found = list(paths(document))
    if found:
        path = data.draw(st.sampled_from(found))
        parent_of(document, path)[path[-1]] = data.draw(json_values)


def change_port(document: dict[str, Any], data: st.DataObject) -> None:
    endpoints = [
        p
        for p in paths(document)
        if (
            (p[0] in ("edges", "consts") and len(p) == 3 and p[-1] in ("from", "to"))
            or (p[0] == "exports" and len(p) == 2)
        )
        and isinstance(parent_of(document, p), dict)
        and isinstance(parent_of(document, p)[p[-1]], str)
    ]
    if endpoints:
        path = data.draw(st.sampled_from(endpoints))
        node = parent_of(document, path)[path[-1]].split(".")[0]
        port = data.draw(st.sampled_from(PORT_NAMES) | st.text(max_size=5))
        parent_of(document, path)[path[-1]] = f"{node}.{port}"


def change_progdef(document: dict[str, Any], data: st.DataObject) -> None:
    nodes = document.get("nodes")
    if isinstance(nodes, dict) and nodes:
        node = data.draw(st.sampled_from(sorted(nodes)))
        progdef = data.draw(st.sampled_from(sorted(CATALOGUE)))
        nodes[node] = {"progdef": data.draw(st.sampled_from([progdef, typo(progdef, data)]))}


def add_node(document: dict[str, Any], data: st.DataObject) -> None:
    nodes = document.setdefault("nodes", {})
    if isinstance(nodes, dict):
        nodes[data.draw(names)] = {"progdef": data.draw(st.sampled_from(sorted(CATALOGUE)))}


def endpoint_text(document: dict[str, Any], data: st.DataObject) -> str:
    nodes = document.get("nodes")
    node_names = sorted(nodes) if isinstance(nodes, dict) and nodes else ["x"]
    node = data.draw(st.sampled_from(node_names) | names)
    return f"{node}.{data.draw(st.sampled_from(PORT_NAMES) | names)}"


def add_edge(document: dict[str, Any], data: st.DataObject) -> None:
    edges = document.setdefault("edges", [])
    if isinstance(edges, list):
        edges.append({"from": endpoint_text(document, data), "to": endpoint_text(document, data)})


def add_const(document: dict[str, Any], data: st.DataObject) -> None:
    consts = document.setdefault("consts", [])
    if isinstance(consts, list):
        values = data.draw(st.lists(json_values.map(lambda value: {"value": value}), max_size=2))
        consts.append({"to": endpoint_text(document, data), "values": values})


def remove_item(document: dict[str, Any], data: st.DataObject) -> None:
    items = [p for p in paths(document) if isinstance(parent_of(document, p), list)]
    if items:
        path = data.draw(st.sampled_from(items))
        parent_of(document, path).pop(path[-1])


def swap_edge(document: dict[str, Any], data: st.DataObject) -> None:
    edges = document.get("edges")
    edges = [edge for edge in edges if isinstance(edge, dict)] if isinstance(edges, list) else []
    if edges:
        edge = data.draw(st.sampled_from(edges))
        edge["from"], edge["to"] = edge.get("to"), edge.get("from")


MUTATIONS: list[Callable[[dict[str, Any], st.DataObject], None]] = [
    delete_key,
    rename_key,
    replace_value,
    change_port,
    change_progdef,
    add_node,
    add_edge,
    add_const,
    remove_item,
    swap_edge,
]


def assert_consistent(checked: CheckedFlow) -> None:
    """What a clean check promises the runner and the scheduler."""
    flow = checked.flow
    assert sorted(checked.order) == sorted(flow.nodes)
    position = {name: i for i, name in enumerate(checked.order)}
    for edge in flow.edges:
        assert position[edge.source.node] < position[edge.target.node]
    for node, progdef in checked.progdefs.items():
        for port in progdef.inputs:
            endpoint = Endpoint(node, port)
            fed_by_const = endpoint in checked.const_items
            assert (checked.source_of(endpoint) is not None) != fed_by_const
        for side, ports in (("in", progdef.inputs), ("out", progdef.outputs)):
            for port in ports:
                assert not is_type_variable(checked.port_types[(node, side, port)])
    for edge in flow.edges:
        source_type = checked.port_types[(edge.source.node, "out", edge.source.port)]
        assert source_type == checked.port_types[(edge.target.node, "in", edge.target.port)]


@settings(max_examples=100, deadline=None)
@given(base=st.sampled_from(VALID_FLOWS), data=st.data())
def test_a_mutated_flow_checks_cleanly_or_every_problem_names_the_file(
    base: dict[str, Any], data: st.DataObject
) -> None:
    document = copy.deepcopy(base)
    for mutation in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        mutation(document, data)
    text = json.dumps(document, indent=2)
    corrupt = data.draw(st.integers(0, 9)) == 0
    if corrupt:
        cut = data.draw(st.integers(0, len(text)))
        text = text[:cut] + data.draw(st.sampled_from(["", ",", "}", '"', "]"])) + text[cut:]

    try:
        checked = check_flow(parse_flow(text, source=SOURCE), CATALOGUE, source=SOURCE)
    except FlowInvalid as e:
        assert e.problems
        for problem in e.problems:
            assert isinstance(problem, str) and problem.startswith(f"{SOURCE}:"), problem
            assert problem[len(SOURCE) + 1 :].strip(), problem
            assert "\n" not in problem and "Traceback" not in problem, problem
        return
    assert_consistent(checked)
    if not corrupt:
        # The shipped schema must accept every flow the checker accepts.
        FLOW_SCHEMA.validate(document)
