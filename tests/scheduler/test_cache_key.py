"""Which nodes of a flow are cacheable and their keys: a key changes exactly when something
upstream of the node (a const, a progdef's version) changes."""

from __future__ import annotations

from typing import Any

from executor.core.progdef import parse_progdef
from scheduler.flow.cache_key import cache_keys
from tests.scheduler.checking import CATALOGUE, check, hello

# Two independent branches, each a source fed by its own const and greeted.
BRANCHES: dict[str, Any] = {
    "name": "branches",
    "nodes": {
        "a": {"progdef": "source"},
        "b": {"progdef": "source"},
        "greet_a": {"progdef": "greet"},
        "greet_b": {"progdef": "greet"},
        "total": {"progdef": "count"},
    },
    "edges": [
        {"from": "a.src", "to": "greet_a.name"},
        {"from": "b.src", "to": "greet_b.name"},
        {"from": "greet_b.greeting", "to": "total.items"},
    ],
    "consts": [
        {"to": "a.count", "values": [{"value": 3}]},
        {"to": "b.count", "values": [{"value": 4}]},
    ],
    "exports": {"a": "greet_a.greeting", "total": "total.total"},
}


def branches(a: int = 3, b: int = 4) -> dict[str, Any]:
    consts = [{"to": "a.count", "values": [a]}, {"to": "b.count", "values": [b]}]
    return {**BRANCHES, "consts": consts}


def test_every_node_of_a_deterministic_flow_fed_by_consts_is_cacheable() -> None:
    keys = cache_keys(check(hello()))

    assert set(keys) == {"names", "hi", "out"}
    assert len(set(keys.values())) == 3


def test_the_same_flow_gives_the_same_keys_and_a_const_spelling_does_not_matter() -> None:
    spelled_out = {**BRANCHES}

    assert cache_keys(check(branches())) == cache_keys(check(branches()))
    assert cache_keys(check(branches())) == cache_keys(check(spelled_out))


def test_changing_one_const_changes_exactly_the_keys_downstream_of_it() -> None:
    before = cache_keys(check(branches(b=4)))
    after = cache_keys(check(branches(b=5)))

    changed = {node for node in before if before[node] != after[node]}
    assert changed == {"b", "greet_b", "total"}


def test_a_non_deterministic_node_upstream_makes_everything_below_it_uncacheable() -> None:
    flow = hello(
        nodes={
            "names": {"progdef": "source"},
            "boom": {"progdef": "explode"},
            "hi": {"progdef": "greet"},
            "out": {"progdef": "void_sink"},
        },
        edges=[
            {"from": "names.src", "to": "boom.items"},
            {"from": "boom.items", "to": "hi.name"},
            {"from": "hi.greeting", "to": "out.sink"},
        ],
    )

    assert set(cache_keys(check(flow))) == {"names"}


def test_a_new_version_of_a_progdef_changes_its_key_and_the_keys_below_it() -> None:
    greet = CATALOGUE["greet"]
    upgraded = parse_progdef({**greet.raw, "description": "Greets, now politely."})
    catalogue = {**CATALOGUE, "greet": upgraded}
    assert upgraded.version != greet.version

    before = cache_keys(check(hello()))
    after = cache_keys(check(hello(), catalogue))

    assert {node for node in before if before[node] != after[node]} == {"hi", "out"}


def test_a_node_whose_progdef_is_not_deterministic_has_no_key() -> None:
    greet = CATALOGUE["greet"]
    plain = parse_progdef({**greet.raw, "deterministic": False})

    assert set(cache_keys(check(hello(), {**CATALOGUE, "greet": plain}))) == {"names"}
