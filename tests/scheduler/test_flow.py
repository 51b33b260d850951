"""The flow model and checker: every rule of Flow JSON, as the user reads its problems."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from executor.errors import FlowInvalid, ProgdefInvalid
from executor.pb.dagyo import types_pb2
from executor.progdef import Progdef, load_catalogue, parse_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.model import (
    CheckedFlow,
    Const,
    Edge,
    Endpoint,
    Node,
    load_flow,
    parse_flow,
    schema_path,
)

ROOT = Path(__file__).parents[2]
CATALOGUE = load_catalogue(ROOT / "progdefs")
SOURCE = "hello.json"

HELLO: dict[str, Any] = {
    "name": "hello",
    "nodes": {
        "names": {"progdef": "source"},
        "hi": {"progdef": "greet"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [
        {"from": "names.src", "to": "hi.name"},
        {"from": "hi.greeting", "to": "out.sink"},
    ],
    "consts": [{"to": "names.count", "values": [{"value": 3}]}],
    "exports": {"greetings": "hi.greeting"},
}


def hello(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the hello flow with some top-level keys replaced."""
    return {**copy.deepcopy(HELLO), **changes}


def check(doc: dict[str, Any] | str, catalogue: dict[str, Progdef] = CATALOGUE) -> CheckedFlow:
    text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
    return check_flow(parse_flow(text, source=SOURCE), catalogue, source=SOURCE)


def problems(doc: dict[str, Any] | str, catalogue: dict[str, Progdef] = CATALOGUE) -> list[str]:
    with pytest.raises(FlowInvalid) as info:
        check(doc, catalogue)
    return info.value.problems


def with_progdefs(*documents: dict[str, Any]) -> dict[str, Progdef]:
    """The sample catalogue plus progdefs made for one test."""
    extra = {}
    for document in documents:
        progdef = parse_progdef({"run": "main:run", **document})
        extra[progdef.name] = progdef
    return {**CATALOGUE, **extra}


# --- valid flows --------------------------------------------------------------------------


def test_hello_checks_with_bound_types_encoded_consts_and_an_order() -> None:
    checked = check(HELLO)

    assert checked.flow.name == "hello"
    assert checked.flow.nodes["hi"] == Node(name="hi", progdef="greet")
    assert checked.flow.edges[0] == Edge(Endpoint("names", "src"), Endpoint("hi", "name"))
    assert checked.flow.consts == (Const(Endpoint("names", "count"), ({"value": 3},)),)
    assert checked.order == ("names", "hi", "out")
    assert checked.progdefs["hi"] is CATALOGUE["greet"]
    assert checked.port_types[("out", "in", "sink")] == "dagyo.types.Text"
    assert checked.port_types[("names", "in", "count")] == "dagyo.types.Int64"
    assert checked.const_items == {
        Endpoint("names", "count"): (types_pb2.Int64(value=3).SerializeToString(),)
    }
    assert checked.source_of(Endpoint("hi", "name")) == Endpoint("names", "src")
    assert checked.source_of(Endpoint("names", "count")) is None
    assert checked.consumers_of(Endpoint("hi", "greeting")) == (Endpoint("out", "sink"),)
    assert checked.exports_of(Endpoint("hi", "greeting")) == ("greetings",)
    assert str(Endpoint("hi", "name")) == "hi.name"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_flow_checks(path: Path) -> None:
    check_flow(load_flow(path), CATALOGUE, source=str(path))


def test_the_empty_flow_is_valid() -> None:
    checked = check({"name": "empty"})

    assert checked.order == ()
    assert checked.port_types == {} and checked.const_items == {}


def test_version_1_is_accepted() -> None:
    check(hello(version=1))


def test_disconnected_subgraphs_are_valid() -> None:
    doc = hello()
    doc["nodes"]["n2"] = {"progdef": "source"}
    doc["nodes"]["sink2"] = {"progdef": "void_sink"}
    doc["edges"].append({"from": "n2.src", "to": "sink2.sink"})
    doc["consts"].append({"to": "n2.count", "values": [{"value": 1}]})

    checked = check(doc)

    assert set(checked.order) == {"names", "hi", "out", "n2", "sink2"}


def test_an_output_may_feed_several_inputs_and_be_exported() -> None:
    doc = hello()
    doc["nodes"]["c"] = {"progdef": "count"}
    doc["edges"].append({"from": "names.src", "to": "c.items"})
    doc["exports"] = {"names": "names.src", "total": "c.total", "greetings": "hi.greeting"}

    checked = check(doc)

    assert checked.consumers_of(Endpoint("names", "src")) == (
        Endpoint("hi", "name"),
        Endpoint("c", "items"),
    )
    assert checked.exports_of(Endpoint("names", "src")) == ("names",)


def test_the_order_puts_producers_before_consumers() -> None:
    # Written consumers first, so JSON order alone would be wrong.
    doc = hello(nodes={"out": {"progdef": "void_sink"}, **HELLO["nodes"]})

    assert check(doc).order == ("names", "hi", "out")


# --- type variables -----------------------------------------------------------------------


def test_type_variables_bind_through_slow_count_and_void_sink() -> None:
    doc = {
        "name": "chain",
        "nodes": {
            "names": {"progdef": "source"},
            "s": {"progdef": "slow"},
            "c": {"progdef": "count"},
            "out": {"progdef": "void_sink"},
        },
        "edges": [
            {"from": "names.src", "to": "s.items"},
            {"from": "s.items", "to": "c.items"},
            {"from": "c.total", "to": "out.sink"},
        ],
        "consts": [
            {"to": "names.count", "values": [{"value": 2}]},
            {"to": "s.delay_ms", "values": [{"value": 5}]},
        ],
    }

    types = check(doc).port_types

    assert types[("s", "in", "items")] == types[("s", "out", "items")] == "dagyo.types.Text"
    assert types[("c", "in", "items")] == "dagyo.types.Text"
    assert types[("out", "in", "sink")] == "dagyo.types.Int64"


def test_a_type_variable_binds_from_downstream_so_a_const_can_feed_it() -> None:
    doc = hello(
        nodes={"s": {"progdef": "slow"}, "hi": {"progdef": "greet"}},
        edges=[{"from": "s.items", "to": "hi.name"}],
        consts=[
            {"to": "s.items", "values": [{"text": "Ada"}]},
            {"to": "s.delay_ms", "values": [{"value": 0}]},
        ],
    )

    checked = check(doc)

    assert checked.port_types[("s", "in", "items")] == "dagyo.types.Text"
    assert checked.const_items[Endpoint("s", "items")] == (
        types_pb2.Text(text="Ada").SerializeToString(),
    )


def test_a_type_variable_bound_to_two_typenames_is_a_mismatch_naming_both_edges() -> None:
    catalogue = with_progdefs(
        {"name": "zip", "inputs": {"a": "A", "b": "A"}, "outputs": {"both": "A"}}
    )
    doc = hello(
        nodes={
            "names": {"progdef": "source"},
            "c": {"progdef": "count"},
            "z": {"progdef": "zip"},
        },
        edges=[
            {"from": "names.src", "to": "z.a"},
            {"from": "names.src", "to": "c.items"},
            {"from": "c.total", "to": "z.b"},
        ],
        exports={"both": "z.both"},
    )

    assert problems(doc, catalogue) == [
        "hello.json: edge c.total -> z.b: type mismatch: c.total is dagyo.types.Int64 but z.b "
        "is dagyo.types.Text (its type variable A was bound by edge names.src -> z.a)"
    ]


def test_a_const_into_a_type_variable_cannot_bind_it() -> None:
    doc = hello(
        nodes={"out": {"progdef": "void_sink"}},
        edges=[],
        consts=[{"to": "out.sink", "values": [{"value": 1}]}],
        exports={},
    )

    assert problems(doc) == [
        "hello.json: const to out.sink: port has type variable T, which a const cannot bind; "
        "feed it from an edge"
    ]


def test_an_output_whose_type_variable_nothing_binds_is_an_error() -> None:
    # parse_progdef refuses such a progdef; a hand-built one shows the flow check holds too.
    anything = Progdef(name="anything", inputs={}, outputs={"out": "T"}, run="main:run")
    doc = hello(nodes={"g": {"progdef": "anything"}}, edges=[], consts=[], exports={"x": "g.out"})

    assert problems(doc, {**CATALOGUE, "anything": anything}) == [
        "hello.json: g.out: output has type variable T, which nothing binds; feed an input of "
        "type T from an edge"
    ]


# --- the rules, one problem each ----------------------------------------------------------


def test_a_node_naming_no_progdef_gets_a_did_you_mean() -> None:
    doc = hello()
    doc["nodes"]["hi"]["progdef"] = "greeet"

    # The node's edges are not reported again: its ports are unknown.
    assert problems(doc) == [
        "hello.json: node hi: no progdef named 'greeet' in the catalogue (did you mean 'greet'?)"
    ]


def test_a_node_naming_no_progdef_at_all_says_where_to_look() -> None:
    doc = hello()
    doc["nodes"]["hi"]["progdef"] = "translate"

    assert problems(doc) == [
        "hello.json: node hi: no progdef named 'translate' in the catalogue; "
        "`dagyo progdefs` lists them"
    ]


def test_an_edge_to_a_misspelt_input_gets_a_did_you_mean() -> None:
    doc = hello()
    doc["edges"][0]["to"] = "hi.nmae"

    found = problems(doc)

    assert (
        "hello.json: edge names.src -> hi.nmae: hi.nmae: no such input on progdef greet "
        "(did you mean 'name'?)"
    ) in found
    assert "hello.json: hi.name: input has no source: connect an edge to it or give it a const" in (
        found
    )


def test_an_edge_from_a_missing_output_lists_the_outputs() -> None:
    doc = hello()
    doc["edges"][0]["from"] = "names.out"

    assert (
        "hello.json: edge names.out -> hi.name: names.out: no such output on progdef source; "
        "its outputs are src"
    ) in problems(doc)


def test_an_edge_from_an_input_says_which_way_edges_run() -> None:
    doc = hello()
    doc["edges"][0]["from"] = "names.count"

    assert (
        "hello.json: edge names.count -> hi.name: names.count: no such output on progdef "
        "source; count is an input: edges run from an output to an input"
    ) in problems(doc)


def test_an_edge_naming_a_missing_node_gets_a_did_you_mean() -> None:
    doc = hello()
    doc["edges"][1]["to"] = "outt.sink"

    assert (
        "hello.json: edge hi.greeting -> outt.sink: outt.sink: no node named 'outt' in the "
        "flow (did you mean 'out'?)"
    ) in problems(doc)


def test_a_const_to_a_misspelt_input_gets_a_did_you_mean() -> None:
    doc = hello(consts=[{"to": "names.cuont", "values": [{"value": 3}]}])

    assert (
        "hello.json: const to names.cuont: names.cuont: no such input on progdef source "
        "(did you mean 'count'?)"
    ) in problems(doc)


def test_an_export_of_an_input_is_an_error() -> None:
    doc = hello(exports={"greetings": "hi.greeting", "names": "hi.name"})

    assert problems(doc) == [
        "hello.json: export names: hi.name: no such output on progdef greet; name is an "
        "input: only outputs are exported"
    ]


def test_an_input_with_two_sources_names_them() -> None:
    doc = hello()
    doc["consts"].append({"to": "hi.name", "values": ["Ada"]})

    assert problems(doc) == [
        "hello.json: hi.name: input has 2 sources (edge names.src -> hi.name, const): give it "
        "exactly one edge or one const"
    ]


def test_an_input_with_no_source() -> None:
    doc = hello(consts=[])

    assert problems(doc) == [
        "hello.json: names.count: input has no source: connect an edge to it or give it a const"
    ]


def test_an_output_that_goes_nowhere() -> None:
    doc = hello(exports={})
    doc["edges"].pop()
    del doc["nodes"]["out"]

    assert problems(doc) == [
        "hello.json: hi.greeting: output goes nowhere: connect it to a void_sink or export it"
    ]


def test_an_edge_between_different_typenames_is_a_type_mismatch() -> None:
    doc = hello()
    doc["nodes"]["n"] = {"progdef": "count"}
    doc["edges"] = [
        {"from": "names.src", "to": "n.items"},
        {"from": "n.total", "to": "hi.name"},
        {"from": "hi.greeting", "to": "out.sink"},
    ]

    assert problems(doc) == [
        "hello.json: edge n.total -> hi.name: type mismatch: n.total is dagyo.types.Int64 but "
        "hi.name is dagyo.types.Text"
    ]


def test_a_cycle_is_listed_edge_by_edge() -> None:
    doc = {
        "name": "loop",
        "nodes": {"a": {"progdef": "explode"}, "b": {"progdef": "explode"}},
        "edges": [{"from": "a.items", "to": "b.items"}, {"from": "b.items", "to": "a.items"}],
    }

    assert problems(doc) == [
        "hello.json: the flow has a cycle: a.items -> b.items, b.items -> a.items; remove or "
        "reroute one of these edges"
    ]


def test_an_edge_from_a_node_to_itself_is_a_cycle() -> None:
    doc = {
        "name": "loop",
        "nodes": {"a": {"progdef": "explode"}},
        "edges": [{"from": "a.items", "to": "a.items"}],
    }

    assert problems(doc) == [
        "hello.json: the flow has a cycle: a.items -> a.items; remove or reroute one of these edges"
    ]


def test_every_problem_is_reported_at_once() -> None:
    doc = hello(consts=[], exports={})
    doc["nodes"]["hi"]["progdef"] = "greeet"
    doc["nodes"]["c"] = {"progdef": "count"}
    doc["edges"].append({"from": "names.src", "to": "c.itmes"})

    assert problems(doc) == [
        "hello.json: node hi: no progdef named 'greeet' in the catalogue (did you mean 'greet'?)",
        "hello.json: edge names.src -> c.itmes: c.itmes: no such input on progdef count (did "
        "you mean 'items'?)",
        "hello.json: names.count: input has no source: connect an edge to it or give it a const",
        "hello.json: c.items: input has no source: connect an edge to it or give it a const",
        "hello.json: c.total: output goes nowhere: connect it to a void_sink or export it",
    ]


# --- consts -------------------------------------------------------------------------------


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


def test_a_port_naming_no_known_type_is_refused_at_load_with_did_you_mean() -> None:
    with pytest.raises(ProgdefInvalid) as caught:
        with_progdefs({"name": "odd", "inputs": {"x": "dagyo.types.Txt"}, "outputs": {}})

    assert caught.value.problems == [
        "progdef.json: input 'x': no message named 'dagyo.types.Txt' (did you mean "
        "'dagyo.types.Text'?): use a dagyo.types name, a well-known type such as "
        "google.protobuf.Timestamp, or define it in a .proto listed in protos"
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

    assert info.value.problems == [f"{path}: cannot read the flow: No such file or directory"]


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
