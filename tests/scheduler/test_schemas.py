"""The shipped JSON Schemas: they accept every valid file and reject unknown keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from executor.core.errors import FlowInvalid
from executor.core.progdef import load_catalogue
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow, schema_path
from tests.scheduler import checking

ROOT = Path(__file__).parents[2]
PROGDEF_FILES = sorted(ROOT.glob("progdefs/*/progdef.json"))
EXAMPLE_FILES = sorted(ROOT.glob("examples/*.json"))

HELLO: dict[str, Any] = {
    **checking.HELLO,
    "version": 1,
    "consts": [{"to": "names.count", "values": [{"value": 3}, {"value": 4}]}],
}

GREET: dict[str, Any] = json.loads((ROOT / "progdefs" / "greet" / "progdef.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_path(name).read_text()))


def changed(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of document with the value at path set (the last key may be new)."""
    document = copy.deepcopy(document)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


@pytest.mark.parametrize("name", ["flow", "progdef"])
def test_the_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json.loads(schema_path(name).read_text())

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", PROGDEF_FILES, ids=lambda p: p.parent.name)
def test_every_sample_progdef_matches_the_progdef_schema(path: Path) -> None:
    validator("progdef").validate(json.loads(path.read_text()))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_flow_matches_the_flow_schema(path: Path) -> None:
    validator("flow").validate(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "flow",
    [
        HELLO,
        {"name": "empty"},
        {"name": "only-nodes", "nodes": {"a": {"progdef": "void_sink"}}},
        changed(HELLO, ("consts", 0, "values"), [{"value": {"text": "Ada", "n": [1, None]}}]),
    ],
    ids=["hello", "empty", "only-nodes", "any-json-value"],
)
def test_valid_flows_match_the_flow_schema(flow: dict[str, Any]) -> None:
    validator("flow").validate(flow)


@pytest.mark.parametrize(
    "path",
    [
        ("nodse",),
        ("nodes", "hi", "progdf"),
        ("edges", 0, "form"),
        ("consts", 0, "vaules"),
    ],
    ids=lambda path: ".".join(map(str, path)),
)
def test_the_flow_schema_and_the_checker_reject_unknown_keys(path: tuple[Any, ...]) -> None:
    flow = changed(HELLO, path, {})

    assert not validator("flow").is_valid(flow)
    with pytest.raises(FlowInvalid, match="unknown key"):
        check_flow(parse_flow(json.dumps(flow)), load_catalogue(ROOT / "progdefs"))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 2),
        (("version",), True),
        (("name",), "Hello"),
        (("nodes", "Hi"), {"progdef": "greet"}),
        (("nodes", "hi"), "greet"),
        (("nodes", "hi", "progdef"), 3),
        (("edges",), {}),
        (("edges", 0, "from"), "names"),
        (("edges", 0, "to"), ["hi", "name"]),
        (("consts", 0, "values"), {"value": 3}),
        (("consts", 0, "values", 0), None),
        (("exports", "greetings"), "hi"),
        (("exports", "Greetings"), "hi.greeting"),
    ],
    ids=lambda part: json.dumps(part) if not isinstance(part, tuple) else ".".join(map(str, part)),
)
def test_the_flow_schema_and_the_checker_reject_bad_shapes(
    path: tuple[Any, ...], value: Any
) -> None:
    flow = changed(HELLO, path, value)

    assert not validator("flow").is_valid(flow)
    with pytest.raises(FlowInvalid):
        parse_flow(json.dumps(flow))


def test_the_flow_schema_requires_a_name() -> None:
    assert not validator("flow").is_valid({"nodes": {}})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("colour",), "red"),
        (("image", "tag"), "latest"),
        (("scaling", "max_job"), 3),
        (("resources", "gpus"), 1),
        (("retries",), {"attempts": 2, "backof_ms": 10}),
        (("inputs", "name"), "text"),
        (("name",), "Greet"),
        (("scaling", "max_jobs"), 0),
        (("resources", "cpu"), "lots"),
        (("style",), "batch"),
        (("secrets",), ["API KEY"]),
        (("deterministic",), "yes"),
    ],
    ids=lambda part: json.dumps(part) if not isinstance(part, tuple) else ".".join(map(str, part)),
)
def test_the_progdef_schema_rejects_unknown_keys_and_bad_values(
    path: tuple[Any, ...], value: Any
) -> None:
    assert not validator("progdef").is_valid(changed(GREET, path, value))


def test_the_progdef_schema_allows_init_only_in_function_style() -> None:
    stream_style = {**GREET, "style": "stream", "init": "main:init"}

    assert not validator("progdef").is_valid(stream_style)
    assert validator("progdef").is_valid({**stream_style, "style": "function"})


def test_the_progdef_schema_accepts_every_optional_section() -> None:
    progdef = {
        **GREET,
        "inputs": {"a": "A", "b": "dagyo.types.Json"},
        "outputs": {"both": "A"},
        "style": "function",
        "init": "main:init",
        "retries": {"attempts": 3, "backoff_ms": 250},
        "env": {"MODE": "fast"},
        "secrets": ["API_KEY"],
        "drain_grace_s": 30,
        "deterministic": True,
    }

    validator("progdef").validate(progdef)
