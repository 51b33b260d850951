"""Direct invocation: one progdef run on given items, as a one-node flow.

``dagyo invoke greet --input name='{"text": "Ada"}'`` becomes the flow::

    {"name": "invoke-greet",
     "nodes": {"greet": {"progdef": "greet"}},
     "consts": [{"to": "greet.name", "values": [{"text": "Ada"}]}],
     "exports": {"greeting": "greet.greeting"}}

which is then checked, admitted and run like any other flow (embedded, or through the
scheduler), so type checks and quotas apply unchanged. Every output is exported under its
port's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from executor.core.errors import FlowInvalid
from executor.core.progdef import Progdef, did_you_mean
from scheduler.flow.overrides import option_items
from scheduler.flow.problems import json_excerpt

#: How problems of an invocation name their source.
SOURCE = "dagyo invoke"


def parse_input(option: str, *, example_port: str = "PORT") -> tuple[str, list[Any]]:
    """``PORT=JSON`` as (port, its items): one JSON value is one item, a JSON list several.

    Raises:
        FlowInvalid: naming the option and what to write instead.
    """
    port, equals, value = option.partition("=")
    port = port.strip()
    if not equals or not port:
        raise FlowInvalid(
            [
                f"--input {json_excerpt(option)}: write PORT=JSON, e.g. "
                f'--input {example_port}=\'{{"text": "Ada"}}\''
            ]
        )
    return port, option_items(value, f"--input {port}")


def invocation_flow(
    progdef_name: str, inputs: Sequence[str], catalogue: Mapping[str, Progdef]
) -> str:
    """The Flow JSON text that runs ``progdef_name`` once on ``inputs``.

    Args:
        progdef_name: the progdef to run.
        inputs: each ``PORT=JSON``; a port given twice gets the items of both, in order.
        catalogue: the progdefs the caller may use.

    Raises:
        FlowInvalid: an unknown progdef or port (with a did-you-mean), a malformed
            ``--input``, or an input given no items. The values' types are checked with
            the flow, by ``check_flow``.
    """
    progdef = catalogue.get(progdef_name)
    if progdef is None:
        hint = did_you_mean(progdef_name, catalogue)
        raise FlowInvalid(
            [
                f"{SOURCE}: no progdef named {progdef_name!r} in the catalogue{hint}; "
                "`dagyo progdefs` lists them"
            ]
        )
    example = next(iter(progdef.inputs), "PORT")
    problems: list[str] = []
    items: dict[str, list[Any]] = {}
    for option in inputs:
        try:
            port, values = parse_input(option, example_port=example)
        except FlowInvalid as e:
            problems += e.problems
            continue
        if port not in progdef.inputs:
            known = ", ".join(progdef.inputs) or "none"
            problems.append(
                f"--input {port}: no such input on progdef {progdef.name}"
                f"{did_you_mean(port, progdef.inputs)}; its inputs: {known}"
            )
            continue
        items.setdefault(port, []).extend(values)
    for port in progdef.inputs:
        if port not in items and not problems:
            problems.append(
                f"{progdef.name}.{port}: no items for this input: give them with "
                f"--input {port}=JSON (one item, or a JSON list)"
            )
    if problems:
        raise FlowInvalid(problems)
    node = progdef.name
    flow = {
        "name": f"invoke-{node}"[:63],
        "nodes": {node: {"progdef": node}},
        "edges": [],
        "consts": [{"to": f"{node}.{port}", "values": values} for port, values in items.items()],
        "exports": {port: f"{node}.{port}" for port in progdef.outputs},
    }
    return json.dumps(flow, ensure_ascii=False)
