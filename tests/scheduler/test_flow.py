"""The flow checker: every rule of a flow against the catalogue, as the user reads its problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.core.progdef import Progdef
from executor.pb.dagyo import types_pb2
from scheduler.flow.check import check_flow
from scheduler.flow.model import Const, Edge, Endpoint, Node
from scheduler.flow.parse import load_flow
from tests.scheduler.checking import CATALOGUE, HELLO, check, hello, problems, with_progdefs

ROOT = Path(__file__).parents[2]


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
    assert (
        "hello.json: hi.name: input has no source: connect an edge to it or give it a const "
        "(in the flow, or at run time with --set hi.name=JSON)"
    ) in found


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
        "hello.json: names.count: input has no source: connect an edge to it or give it a const "
        "(in the flow, or at run time with --set names.count=JSON)"
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
        "hello.json: names.count: input has no source: connect an edge to it or give it a const "
        "(in the flow, or at run time with --set names.count=JSON)",
        "hello.json: c.items: input has no source: connect an edge to it or give it a const "
        "(in the flow, or at run time with --set c.items=JSON)",
        "hello.json: c.total: output goes nowhere: connect it to a void_sink or export it",
    ]
