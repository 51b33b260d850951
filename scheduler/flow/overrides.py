"""Consts given at submit: ``--set NODE.PORT=JSON`` replaces or supplies an input's const."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from executor.core.errors import FlowInvalid, JsonProblems
from executor.core.strictjson import parse_strict
from scheduler.flow.model import Flow
from scheduler.flow.parse import parse_flow
from scheduler.flow.problems import json_excerpt


def parse_set(option: str) -> tuple[str, list[Any]]:
    """``NODE.PORT=JSON`` as (``node.port``, its items): one JSON value is one item, a JSON
    list is several.

    Raises:
        FlowInvalid: naming the option and what to write instead.
    """
    target, equals, value = option.partition("=")
    target = target.strip()
    node, dot, port = target.partition(".")
    if not equals or not dot or not node or not port:
        raise FlowInvalid(
            [f"--set {json_excerpt(option)}: write NODE.PORT=JSON, e.g. --set names.count=3"]
        )
    items = option_items(value, f"--set {target}")
    if any(item is None for item in items):
        raise FlowInvalid(
            [
                f"--set {target}: null is no item: write the item in the JSON form of the "
                f"port's type, e.g. --set {target}=3 or --set {target}='\"Ada\"'"
            ]
        )
    return target, items


def option_items(value: str, option: str) -> list[Any]:
    """The items of a JSON value given on the command line (``option`` is ``--set
    names.count`` or ``--input name``): one JSON value is one item, a JSON list several.

    Raises:
        FlowInvalid: when it is not JSON, saying how to quote a text.
    """
    try:
        parsed = parse_strict(value, source=option)
    except JsonProblems as e:
        raise FlowInvalid(
            [f"{problem} (a text must be quoted: {option}='\"Ada\"')" for problem in e.problems]
        ) from None
    return parsed if isinstance(parsed, list) else [parsed]


def parse_with_sets(text: str, sets: Sequence[str], *, source: str) -> Flow:
    """Parse Flow JSON with each ``--set`` replacing (or adding) its input's const; the
    problems of those consts name ``--set``, not the flow file.

    Raises:
        FlowInvalid: for a malformed ``--set`` or flow.
    """
    flow = parse_flow(apply_sets(text, sets, source=source), source=source)
    given = {parse_set(option)[0] for option in sets}
    consts = tuple(
        dataclasses.replace(const, from_set=True) if str(const.target) in given else const
        for const in flow.consts
    )
    return dataclasses.replace(flow, consts=consts)


def apply_sets(text: str, sets: Sequence[str], *, source: str = "flow.json") -> str:
    """The Flow JSON text with each ``--set`` replacing (or adding) its input's const.

    The text is read as strictly as :func:`~scheduler.flow.model.parse_flow` reads it (a key
    given twice is a problem, not the last one kept). A JSON value that is not an object is
    returned as it is, for the parser to report.

    Raises:
        FlowInvalid: for a malformed ``--set``, or a text that is not strict JSON; each
            problem starts with ``source``.
    """
    if not sets:
        return text
    overrides = [parse_set(option) for option in sets]
    try:
        data = parse_strict(text, source=source)
    except JsonProblems as e:
        raise FlowInvalid(e.problems) from None
    if not isinstance(data, dict):
        return text
    consts = data.get("consts", [])
    if not isinstance(consts, list):
        return text
    for target, items in overrides:
        consts = [c for c in consts if not (isinstance(c, dict) and c.get("to") == target)]
        consts.append({"to": target, "values": items})
    data["consts"] = consts
    try:
        return json.dumps(data, ensure_ascii=False)
    except RecursionError:  # parsed near the stack's limit, written from deeper in it
        raise FlowInvalid([f"{source}: malformed JSON: nested too deeply"]) from None
