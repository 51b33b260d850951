"""Checking flows against the sample catalogue in tests: the hello flow, and the problems
of a flow as a user reads them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from executor.core.errors import FlowInvalid
from executor.core.progdef import Progdef, load_catalogue, parse_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.model import CheckedFlow
from scheduler.flow.parse import parse_flow
from tests.conftest import PROGDEFS

# The sample catalogue, and the file name the problems of a checked flow start with.
CATALOGUE = load_catalogue(PROGDEFS)
SOURCE = "hello.json"


# The flow of examples/hello.json.
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
    """Parse and check a flow (a document, or its JSON text) as the file ``hello.json``."""
    text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
    return check_flow(parse_flow(text, source=SOURCE), catalogue, source=SOURCE)


def problems(doc: dict[str, Any] | str, catalogue: dict[str, Progdef] = CATALOGUE) -> list[str]:
    """The problems checking a flow reports; fails the test when it checks."""
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
