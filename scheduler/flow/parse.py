"""Reading Flow JSON (version 1): the shape of the document into a :class:`Flow`.

:func:`parse_flow` checks keys, types, names and ``node.port`` and reports every problem
at once; the progdefs, ports, types and the graph are checked by
:func:`scheduler.flow.check.check_flow`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from executor.core.errors import FlowInvalid, JsonProblems
from executor.core.progdef import NAME, did_you_mean
from executor.core.strictjson import parse_strict
from scheduler.flow.model import (
    MAX_FLOW_CONST_VALUES,
    MAX_FLOW_EDGES,
    MAX_FLOW_NODES,
    Const,
    Edge,
    Endpoint,
    Flow,
    Node,
)
from scheduler.flow.problems import Problems, json_excerpt

FLOW_VERSION = 1
SCHEMA_NAMES = ("flow", "progdef")
_SCHEMAS_DIR = Path(__file__).parent / "schemas"
_TOP_KEYS = ("name", "version", "nodes", "edges", "consts", "exports")
_NAME_RULE = f"must match {NAME.pattern} (lower case letters, digits, '_' and '-')"


def schema_path(name: str) -> Path:
    """Return the path of a shipped JSON Schema (draft 2020-12).

    Args:
        name: ``"flow"`` (Flow JSON version 1) or ``"progdef"`` (progdef.json).

    Raises:
        ValueError: for any other name.
    """
    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema named {name!r}; the schemas are {', '.join(SCHEMA_NAMES)}")
    return _SCHEMAS_DIR / f"{name}.schema.json"


def load_flow(path: Path | str, *, max_bytes: int | None = None) -> Flow:
    """Read and parse a Flow JSON file; problems name the file as given.

    Args:
        max_bytes: a file longer than this is refused unread past it (see
            :func:`read_flow_text`).

    Raises:
        FlowInvalid: when the file cannot be read or is not a well-formed flow.
    """
    return parse_flow(read_flow_text(path, max_bytes=max_bytes), source=str(path))


def read_flow_text(path: Path | str, *, max_bytes: int | None = None) -> str:
    """The text of a Flow JSON file, read up to ``max_bytes`` (None: all of it).

    A flow is sent to the scheduler in one gRPC message, so a CLI bounds it by
    ``DAGYO_MAX_MESSAGE_BYTES``: a larger file (or an endless one, ``/dev/zero``) could
    never be submitted, and is not read past the bound.

    Raises:
        FlowInvalid: naming the file, when it cannot be read, is not UTF-8 or is too long.
    """
    try:
        with open(path, "rb") as file:
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except OSError as e:
        raise FlowInvalid([f"{path}: cannot read the flow file: {e.strerror or e}"]) from e
    if max_bytes is not None and len(data) > max_bytes:
        raise FlowInvalid(
            [
                f"{path}: the flow is more than {max_bytes} bytes, the most the scheduler "
                "accepts in one request (DAGYO_MAX_MESSAGE_BYTES)"
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FlowInvalid([f"{path}: not UTF-8 text: {e.reason} at byte {e.start}"]) from e


def parse_flow(text: str, *, source: str = "flow.json") -> Flow:
    """Parse Flow JSON (version 1) and check its shape: keys, types, names, ``node.port``.

    The progdefs, ports, types and the graph are checked by :func:`check_flow`.

    Args:
        text: the JSON document.
        source: the file name that starts every problem line.

    Problems that leave the flow whole (an unknown key) do not raise here: the flow holds
    them in ``problems`` and :func:`check_flow` reports them with every other problem.

    Raises:
        FlowInvalid: with every shape problem, e.g.
            ``hello.json:3:14: malformed JSON: Expecting ',' delimiter``.
    """
    try:
        data = parse_strict(text, source=source)
    except JsonProblems as e:
        raise FlowInvalid(e.problems) from None
    problem = Problems(source)
    flow = _build_flow(data, problem)
    if not problem.model_whole:
        problem.raise_any()
    return dataclasses.replace(flow, problems=tuple(problem.lines))


def _build_flow(data: Any, problem: Problems) -> Flow:
    if not isinstance(data, dict):
        problem("", f"expected a JSON object with a name and nodes, got {_kind(data)}")
        return Flow(name="", nodes={}, edges=(), consts=(), exports={})
    if "nodes" not in data and {"flow", "match"} <= set(data):
        problem("", _trigger_file(data, problem.source))
        return Flow(name="", nodes={}, edges=(), consts=(), exports={})
    _unknown_keys(data, _TOP_KEYS, "", problem)
    name = data.get("name")
    if "name" not in data:
        problem("", 'missing required key \'name\'; name the flow, e.g. "name": "hello"')
    elif not isinstance(name, str):
        problem("", f"name must be a string, got {_kind(name)}")
    elif not NAME.fullmatch(name):
        problem("", f"name {json_excerpt(name)} {_NAME_RULE}")
    version = data.get("version", FLOW_VERSION)
    if isinstance(version, bool) or version != FLOW_VERSION:
        problem(
            "",
            f"version {json_excerpt(version)} is not supported: this dagyo reads flow JSON "
            f'version {FLOW_VERSION}; write "version": {FLOW_VERSION} or leave it out',
        )
    return Flow(
        name=name if isinstance(name, str) else "",
        nodes=_parse_nodes(data.get("nodes", {}), problem),
        edges=tuple(_parse_edges(data.get("edges", []), problem)),
        consts=tuple(_parse_consts(data.get("consts", []), problem)),
        exports=_parse_exports(data.get("exports", {}), problem),
    )


def _trigger_file(data: dict[str, Any], source: str) -> str:
    """The problem of a trigger file given where a flow was expected, and what to do."""
    folder = Path(source).parent
    sets = data["set"] if isinstance(data.get("set"), dict) else {}
    flow = data["flow"] if isinstance(data["flow"], str) else "FLOW.json"
    run = " ".join(["dagyo run", str(folder / flow), *(f"--set {port}=JSON" for port in sets)])
    return (
        "this is a trigger file, not a flow: put it in the folder DAGYO_TRIGGERS names "
        f"(`DAGYO_TRIGGERS={folder} dagyo up`), or run the flow it names: {run}"
    )


def _parse_nodes(value: Any, problem: Problems) -> dict[str, Node]:
    if not isinstance(value, dict):
        problem("", f'nodes must be an object of name -> {{"progdef": ...}}, got {_kind(value)}')
        return {}
    if len(value) > MAX_FLOW_NODES:
        problem(
            "",
            f"the flow has {len(value)} nodes, more than the {MAX_FLOW_NODES} a flow may have "
            "(every node is a job, and all of a flow's jobs run at once): split it into "
            "several flows",
        )
        return {}
    nodes = {}
    for name, spec in value.items():
        where = f"node {name}" if NAME.fullmatch(name) else f"node {name!r}"
        if not NAME.fullmatch(name):
            problem(where, f"a node name {_NAME_RULE}")
        if not isinstance(spec, dict):
            problem(where, f'expected an object like {{"progdef": "greet"}}, got {_kind(spec)}')
            continue
        _unknown_keys(spec, ("progdef",), where, problem)
        progdef = spec.get("progdef")
        if "progdef" not in spec:
            problem(where, "missing required key 'progdef'; name the progdef the node runs")
        elif not isinstance(progdef, str):
            problem(where, f"progdef must be a string naming a progdef, got {_kind(progdef)}")
        else:
            nodes[name] = Node(name=name, progdef=progdef)
    return nodes


def _parse_edges(value: Any, problem: Problems) -> list[Edge]:
    if not isinstance(value, list):
        problem("", f'edges must be a list of {{"from": ..., "to": ...}}, got {_kind(value)}')
        return []
    if len(value) > MAX_FLOW_EDGES:
        problem(
            "",
            f"the flow has {len(value)} edges, more than the {MAX_FLOW_EDGES} a flow may have "
            "(every edge is a queue): split it into several flows",
        )
        return []
    edges = []
    example = '{"from": "names.src", "to": "hi.name"}'
    for where, spec in _objects(value, "edge", example, ("from", "to"), problem):
        source = _endpoint(spec, "from", where, problem, "an output", "from ")
        target = _endpoint(spec, "to", where, problem, "an input", "to ")
        if source is not None and target is not None:
            edges.append(Edge(source=source, target=target))
    return edges


def _parse_consts(value: Any, problem: Problems) -> list[Const]:
    if not isinstance(value, list):
        problem("", f'consts must be a list of {{"to": ..., "values": ...}}, got {_kind(value)}')
        return []
    count = sum(
        len(spec["values"])
        for spec in value
        if isinstance(spec, dict) and isinstance(spec.get("values"), list)
    )
    if count > MAX_FLOW_CONST_VALUES:
        problem(
            "",
            f"the flow has {count} const values, more than the {MAX_FLOW_CONST_VALUES} a flow "
            "may have (each is checked at submit and sent in its job): feed many items from a "
            "progdef that reads them instead",
        )
        return []
    consts = []
    example = '{"to": "names.count", "values": [{"value": 3}]}'
    for where, spec in _objects(value, "const", example, ("to", "values"), problem):
        target = _endpoint(spec, "to", where, problem, "an input", "to ")
        entries = spec.get("values")
        if "values" not in spec:
            problem(where, 'missing required key \'values\'; list the items: [{"text": "Ada"}]')
        elif not isinstance(entries, list):
            problem(
                where, f'values must be a list like [{{"value": 3}}] or [3], got {_kind(entries)}'
            )
        else:
            # Each value is checked against its port's type later; null is never an item.
            nulls = [index for index, entry in enumerate(entries, 1) if entry is None]
            for index in nulls:
                problem(
                    f"{where}: value {index}",
                    "null is no item: write the item in the JSON form of the port's type, "
                    'e.g. {"text": "Ada"}, or as a scalar for a type of one field: "Ada", 3',
                )
            if target is not None and not nulls:
                consts.append(Const(target=target, values=tuple(entries)))
    return consts


def _parse_exports(value: Any, problem: Problems) -> dict[str, Endpoint]:
    if not isinstance(value, dict):
        problem("", f'exports must be an object of name -> "node.port", got {_kind(value)}')
        return {}
    exports = {}
    for name in value:
        where = f"export {name}" if NAME.fullmatch(name) else f"export {name!r}"
        if not NAME.fullmatch(name):
            problem(where, f"an export name {_NAME_RULE}")
        endpoint = _endpoint(value, name, where, problem, "an output")
        if endpoint is not None:
            exports[name] = endpoint
    return exports


def _objects(
    value: list[Any], what: str, example: str, keys: tuple[str, ...], problem: Problems
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of a list with where it stands (``edge 3``); a problem for anything else
    in the list, and for each unknown key."""
    for index, spec in enumerate(value, 1):
        where = f"{what} {index}"
        if not isinstance(spec, dict):
            problem(where, f"expected an object like {example}, got {_kind(spec)}")
            continue
        _unknown_keys(spec, keys, where, problem)
        yield where, spec


def _endpoint(
    spec: dict[str, Any], key: str, where: str, problem: Problems, role: str, label: str = ""
) -> Endpoint | None:
    """Return ``spec[key]`` as an Endpoint, or report why it is not ``"node.port"``."""
    if key not in spec:
        problem(where, f'missing required key {key!r}; name {role} as "node.port"')
        return None
    value = spec[key]
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 2 or not all(parts):
        example = "hi.greeting" if role == "an output" else "hi.name"
        problem(
            where,
            f'{label}{json_excerpt(value)} is not of the form "node.port"; name {role} as '
            f'node.port, e.g. "{example}"',
        )
        return None
    return Endpoint(node=parts[0], port=parts[1])


def _unknown_keys(
    spec: dict[str, Any], known: tuple[str, ...], where: str, problem: Problems
) -> None:
    for key in spec:
        if key not in known:
            problem(
                where,
                f"unknown key {key!r}{did_you_mean(key, known)}; the keys are {', '.join(known)}",
                keeps_model=True,
            )


def _kind(value: Any) -> str:
    """Describe a JSON value for a message: ``a list``, ``the string "abc"``…"""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {json_excerpt(value)}"
    return json_excerpt(value)
