"""Flows with known results, run on every transport so the two cannot drift apart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import EXAMPLES


def consts(*values: Any) -> list[Any]:
    """Const values as a flow writes them: each item in its JSON form (or a scalar)."""
    return list(values)


def names(n: int, prefix: str = "") -> list[dict[str, str]]:
    return [{"text": f"{prefix}name-{i}"} for i in range(n)]


@dataclass(frozen=True)
class Case:
    """A flow, the exports it must give (in order per export) and how it must end."""

    id: str
    flow: dict[str, Any]
    exports: dict[str, list[Any]]
    state: str = "succeeded"
    failed_node: str = ""
    unordered: frozenset[str] = field(default_factory=frozenset)


CASES = [
    Case(
        "hello",
        json.loads((EXAMPLES / "hello.json").read_text()),
        {"greetings": names(3, "hello ")},
    ),
    Case(
        "count",
        {
            "name": "count",
            "nodes": {
                "s": {"progdef": "source"},
                "g": {"progdef": "greet"},
                "n": {"progdef": "count"},
            },
            "edges": [{"from": "s.src", "to": "g.name"}, {"from": "g.greeting", "to": "n.items"}],
            "consts": [{"to": "s.count", "values": consts(5000)}],
            "exports": {"total": "n.total"},
        },
        {"total": [{"value": "5000"}]},
    ),
    Case(
        "fan-out",
        {
            "name": "fan-out",
            "nodes": {
                "s": {"progdef": "source"},
                "g": {"progdef": "greet"},
                "n": {"progdef": "count"},
                "v": {"progdef": "void_sink"},
            },
            "edges": [
                {"from": "s.src", "to": "g.name"},
                {"from": "s.src", "to": "n.items"},
                {"from": "s.src", "to": "v.sink"},
            ],
            "consts": [{"to": "s.count", "values": consts(3000)}],
            "exports": {"names": "s.src", "greetings": "g.greeting", "total": "n.total"},
        },
        {"names": names(3000), "greetings": names(3000, "hello "), "total": [{"value": "3000"}]},
    ),
    Case(
        "consts",
        {
            "name": "consts",
            "nodes": {"s": {"progdef": "source"}},
            "consts": [{"to": "s.count", "values": consts(2, 3)}],
            "exports": {"names": "s.src"},
        },
        {"names": names(2) + names(3)},
    ),
    Case(
        "pairs",
        {
            "name": "pairs",
            "nodes": {
                "a": {"progdef": "source"},
                "b": {"progdef": "source"},
                "p": {"progdef": "unordered_cartesian_product"},
            },
            "edges": [{"from": "a.src", "to": "p.a"}, {"from": "b.src", "to": "p.b"}],
            "consts": [
                {"to": "a.count", "values": consts(3)},
                {"to": "b.count", "values": consts(2)},
            ],
            "exports": {"pairs": "p.pairs"},
        },
        {"pairs": [{"a": f"name-{i}", "b": f"name-{j}"} for i in range(3) for j in range(2)]},
        unordered=frozenset({"pairs"}),
    ),
    Case(
        "slow",
        {
            "name": "slow",
            "nodes": {"s": {"progdef": "source"}, "w": {"progdef": "slow"}},
            "edges": [{"from": "s.src", "to": "w.items"}],
            "consts": [
                {"to": "s.count", "values": consts(20)},
                {"to": "w.delay_ms", "values": consts(2)},
            ],
            "exports": {"names": "w.items"},
        },
        {"names": names(20)},
    ),
    Case(
        "explode",
        {
            "name": "explode",
            "nodes": {"x": {"progdef": "explode"}, "n": {"progdef": "count"}},
            "edges": [{"from": "x.items", "to": "n.items"}],
            "consts": [{"to": "x.items", "values": consts({"text": "ok"}, {"text": "panic!"})}],
            "exports": {"total": "n.total"},
        },
        {},
        state="failed",
        failed_node="x",
    ),
    Case("empty", {"name": "empty"}, {}),
]


def same_exports(case: Case, exports: dict[str, list[Any]]) -> bool:
    """True when ``exports`` are the case's, in order (any order for unordered ones)."""
    if set(exports) != set(case.exports):
        return False
    for name, expected in case.exports.items():
        got = exports[name]
        if name in case.unordered:
            key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
            got, expected = sorted(got, key=key), sorted(expected, key=key)
        if got != expected:
            return False
    return True


def slow_flow(count: int, delay_ms: int, name: str = "slowly") -> dict[str, Any]:
    return {
        "name": name,
        "nodes": {"s": {"progdef": "source"}, "w": {"progdef": "slow"}, "n": {"progdef": "count"}},
        "edges": [{"from": "s.src", "to": "w.items"}, {"from": "w.items", "to": "n.items"}],
        "consts": [
            {"to": "s.count", "values": [{"value": count}]},
            {"to": "w.delay_ms", "values": [{"value": delay_ms}]},
        ],
        "exports": {"total": "n.total"},
    }
