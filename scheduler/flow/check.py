"""Checking a flow against the progdef catalogue: ports, sources, cycles, types and consts.

:func:`check_flow` is the entry point; this module holds the rules, and
:mod:`scheduler.flow.bind` binds the type variables of the ports along the edges.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from executor.core.constants import ERROR_TYPE
from executor.core.errors import UnknownType
from executor.core.progdef import Catalogue, Progdef, did_you_mean, sample_catalogue
from executor.core.types import describe, message_class
from scheduler.flow.bind import bind_port_types
from scheduler.flow.model import (
    IN,
    OUT,
    CheckedFlow,
    Const,
    Edge,
    Endpoint,
    Flow,
    Port,
)
from scheduler.flow.problems import Problems, json_excerpt


def check_flow(
    flow: Flow, catalogue: Mapping[str, Progdef], *, source: str = "flow.json"
) -> CheckedFlow:
    """Check a flow against the progdef catalogue, bind its type variables, encode its consts.

    Checks every rule of DESIGN.md, "Flow JSON": progdefs and ports exist, every input has
    exactly one source, every output goes somewhere, edges type-check, consts decode, and
    the graph has no cycle.

    Args:
        flow: the flow, from :func:`parse_flow` or :func:`load_flow`.
        catalogue: progdef name -> progdef, from ``load_catalogue``.
        source: the file name that starts every problem line.

    Raises:
        FlowInvalid: with every problem found, one a line.
    """
    return typecheck(flow, catalogue, source=source)


def typecheck(flow: Flow, catalogue: Mapping[str, Progdef], *, source: str) -> CheckedFlow:
    """Check a flow against a catalogue; see :func:`scheduler.flow.model.check_flow`.

    Raises:
        FlowInvalid: with every problem found, one a line.
    """
    problem = Problems(source)
    problem.lines.extend(flow.problems)  # the shape problems parse_flow let through
    progdefs: dict[str, Progdef] = {}
    for node in flow.nodes.values():
        if node.progdef in catalogue:
            progdefs[node.name] = catalogue[node.progdef]
        elif isinstance(catalogue, Catalogue) and node.progdef in catalogue.left_out:
            why = catalogue.left_out[node.progdef].problems or ("its protos do not load",)
            more = f" (and {len(why) - 1} more: `dagyo progdefs` says)" if len(why) > 1 else ""
            # Its progdef.json's path is the scheduler's: a flow author needs the rest.
            first = why[0].rpartition("progdef.json: ")[2]
            problem(
                f"node {node.name}",
                f"progdef {node.progdef!r} is left out of the catalogue: {first}{more}",
            )
        else:
            hint = did_you_mean(node.progdef, catalogue) or "; `dagyo progdefs` lists them"
            where = f"node {node.name}"
            problem(where, f"no progdef named {node.progdef!r} in the catalogue{hint}")
    ports = _Ports(flow, progdefs)
    good_edges = []
    for edge in flow.edges:
        where = f"edge {edge.source} -> {edge.target}"
        source_problem = ports.problem(edge.source, OUT, "edges run from an output to an input")
        target_problem = ports.problem(edge.target, IN, "edges run from an output to an input")
        for text in (source_problem, target_problem):
            if text:
                problem(where, text)
        if source_problem is None and target_problem is None and ports.known(edge):
            good_edges.append(edge)
    good_consts = []
    for const in flow.consts:
        text = ports.problem(const.target, IN, "a const feeds an input")
        if text:
            problem(const.where, text)
        elif const.target.node in progdefs:
            good_consts.append(const)
    for name, endpoint in flow.exports.items():
        text = ports.problem(endpoint, OUT, "only outputs are exported")
        if text:
            problem(f"export {name}", text)
    _check_sources(flow, progdefs, problem, _samples_hint(catalogue))
    order, cycles = _topological_order(flow)
    for cycle in cycles:
        edges = ", ".join(f"{edge.source} -> {edge.target}" for edge in cycle)
        problem("", f"the flow has a cycle: {edges}; remove or reroute one of these edges")
    # Unify along the flow's direction, so a conflict is reported on the downstream edge.
    rank = {name: index for index, name in enumerate(order)}
    good_edges.sort(key=lambda edge: rank.get(edge.source.node, len(rank)))
    on_cycles = set(flow.nodes) - set(order)
    port_types = bind_port_types(progdefs, good_edges, good_consts, problem, on_cycles=on_cycles)
    const_items = encode_consts(good_consts, port_types, problem)
    problem.raise_any()
    return CheckedFlow(
        flow=flow,
        progdefs=progdefs,
        port_types=port_types,
        const_items=const_items,
        order=tuple(order),
    )


class _Ports:
    """Looks up the ports named by edges, consts and exports."""

    def __init__(self, flow: Flow, progdefs: Mapping[str, Progdef]) -> None:
        self.flow = flow
        self.progdefs = progdefs

    def known(self, edge: Edge) -> bool:
        """Return True when the progdefs of both ends of an edge exist."""
        return edge.source.node in self.progdefs and edge.target.node in self.progdefs

    def problem(self, endpoint: Endpoint, side: str, rule: str) -> str | None:
        """Return what is wrong with an endpoint, or None when it names a port of its side.

        An endpoint on a node whose progdef does not exist gives None: that node is
        reported once, not once per edge.
        """
        if endpoint.node not in self.flow.nodes:
            hint = did_you_mean(endpoint.node, self.flow.nodes) or _listing(
                "the nodes are", self.flow.nodes, "the flow has no nodes"
            )
            return f"{endpoint}: no node named {endpoint.node!r} in the flow{hint}"
        progdef = self.progdefs.get(endpoint.node)
        if progdef is None:
            return None
        kind, ports, other = (
            ("input", progdef.inputs, progdef.outputs)
            if side == IN
            else ("output", progdef.outputs, progdef.inputs)
        )
        if endpoint.port in ports:
            return None
        text = f"{endpoint}: no such {kind} on progdef {progdef.name}"
        hint = did_you_mean(endpoint.port, ports)
        if endpoint.port in other:
            hint += f"; {endpoint.port} is an {'output' if side == IN else 'input'}: {rule}"
        return text + (hint or _listing(f"its {kind}s are", ports, f"it has no {kind}s"))


def _listing(label: str, names: Iterable[str], empty: str) -> str:
    names = list(names)
    shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    return f"; {label} {shown}" if names else f"; {empty}"


def _check_sources(
    flow: Flow, progdefs: Mapping[str, Progdef], problem: Problems, samples: _SamplesHint
) -> None:
    """Every input has exactly one source; every output feeds an input or is exported."""
    feeds: dict[Endpoint, list[str]] = {}
    for edge in flow.edges:
        feeds.setdefault(edge.target, []).append(f"edge {edge.source} -> {edge.target}")
    for const in flow.consts:
        feeds.setdefault(const.target, []).append("const")
    used = {edge.source for edge in flow.edges} | set(flow.exports.values())
    for node, progdef in progdefs.items():
        for port in progdef.inputs:
            where = f"{node}.{port}"
            sources = feeds.get(Endpoint(node, port), [])
            if not sources:
                problem(
                    where,
                    "input has no source: connect an edge to it or give it a const (in the "
                    f"flow, or at run time with --set {where}=JSON)",
                )
            elif len(sources) > 1:
                problem(
                    where,
                    f"input has {len(sources)} sources ({', '.join(sources)}): give it exactly "
                    "one edge or one const",
                )
        for port in progdef.outputs:
            if Endpoint(node, port) not in used:
                problem(f"{node}.{port}", _nowhere(progdef.outputs[port], samples))


@dataclass(frozen=True)
class _SamplesHint:
    """How to add the sample catalogue's sinks and error handlers to a catalogue loaded
    from folders without them ("" where it has them, or was not loaded from folders)."""

    sink: str = ""
    errors: str = ""


def _samples_hint(catalogue: Mapping[str, Progdef]) -> _SamplesHint:
    folders = catalogue.folders if isinstance(catalogue, Catalogue) else ()
    if not folders:
        return _SamplesHint()
    samples = sample_catalogue()
    given = " ".join(f"--progdefs {folder}" for folder in (*folders, samples))
    hint = (
        "the sample catalogue's sinks and error handlers come with it as one more folder, " + given
    )
    handlers = {"assert", "ignore_errors", "log_errors"}
    return _SamplesHint(
        sink="" if "void_sink" in catalogue else f" (this catalogue has none: {hint})",
        errors="" if handlers & set(catalogue) else f" (this catalogue has none of them: {hint})",
    )


def _nowhere(port_type: str, samples: _SamplesHint) -> str:
    """The problem of an output port that goes nowhere, with what fits its type."""
    if port_type == ERROR_TYPE:
        return (
            "error port goes nowhere: route its Errors to an assert, an ignore_errors or a "
            f"log_errors node{samples.errors}, or export it for the submitter to handle"
        )
    if samples.sink:
        return f"output goes nowhere: export it, or connect it to a void_sink{samples.sink}"
    return "output goes nowhere: connect it to a void_sink or export it"


def _topological_order(flow: Flow) -> tuple[list[str], list[list[Edge]]]:
    """Return the nodes in a topological order (ties in JSON order), and the cycles found.

    Nodes on or behind a cycle are left out of the order; each cycle is a list of edges
    from a node back to itself, and each cycle found holds a node no earlier one holds.
    """
    names = list(flow.nodes)
    index = {name: i for i, name in enumerate(names)}
    edges = [e for e in flow.edges if e.source.node in index and e.target.node in index]
    outgoing: dict[str, list[Edge]] = {name: [] for name in names}
    waiting = dict.fromkeys(names, 0)
    for edge in edges:
        outgoing[edge.source.node].append(edge)
        waiting[edge.target.node] += 1
    ready = [index[name] for name in names if not waiting[name]]
    heapq.heapify(ready)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for edge in outgoing[name]:
            waiting[edge.target.node] -= 1
            if not waiting[edge.target.node]:
                heapq.heappush(ready, index[edge.target.node])
    left = [name for name in names if waiting[name]]
    cycles: list[list[Edge]] = []
    covered: set[str] = set()
    for start in left:
        if start not in covered:
            cycle = _shortest_cycle(start, outgoing)
            if cycle:
                cycles.append(cycle)
                covered.update(edge.source.node for edge in cycle)
    return order, cycles


def _shortest_cycle(start: str, outgoing: Mapping[str, list[Edge]]) -> list[Edge]:
    """Return the shortest path of edges from start back to start, or [] when none is."""
    reached_by: dict[str, Edge | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for edge in outgoing[name]:
                if edge.target.node == start:
                    path = [edge]
                    while (previous := reached_by[path[0].source.node]) is not None:
                        path.insert(0, previous)
                    return path
                if edge.target.node not in reached_by:
                    reached_by[edge.target.node] = edge
                    following.append(edge.target.node)
        frontier = following
    return []


# --- consts -------------------------------------------------------------------------------


def encode_consts(
    consts: Iterable[Const], port_types: Mapping[Port, str], problem: Problems
) -> dict[Endpoint, tuple[bytes, ...]]:
    """Serialize every const value as its port's typename.

    Consts whose port has no typename (an unbound variable) are skipped:
    :func:`bind_port_types` reports those.

    Returns:
        input endpoint -> the serialized values, in order.
    """
    items: dict[Endpoint, tuple[bytes, ...]] = {}
    for const in consts:
        typename = port_types.get((const.target.node, IN, const.target.port))
        if typename is None:
            continue
        where = const.where
        try:
            cls = message_class(typename)
        except UnknownType:
            problem(
                where,
                f"{const.target} has typename {typename}, which this process does not know, "
                f"so its values cannot be encoded; feed {const.target} from an edge instead",
            )
            continue
        encoded = []
        for index, value in enumerate(const.values, 1):
            try:
                encoded.append(encode_value(value, cls))
            except ValueError as e:
                problem(
                    where,
                    f"value {index} ({json_excerpt(value)}) is not the JSON form of {typename}: "
                    f"{e}; {typename} has the fields {describe(typename) or '(none)'}",
                )
        items[const.target] = tuple(encoded)
    return items


def encode_value(value: Any, cls: type[Message]) -> bytes:
    """Serialize the JSON form of one message (``json_format``) as protobuf bytes.

    A message of exactly one field may also be written as that field's value when it is not
    an object, as protobuf does for its own wrapper types: ``3`` is ``{"value": 3}`` for a
    ``dagyo.types.Int64``, ``"Ada"`` is ``{"text": "Ada"}`` for a ``dagyo.types.Text``.

    Raises:
        ValueError: saying what is wrong with the value.
    """
    fields = cls.DESCRIPTOR.fields
    if value is None:
        raise ValueError("null is no item: write the item as an object, or as a scalar")
    if not isinstance(value, dict) and len(fields) == 1:
        value = {fields[0].json_name: value}
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {json_excerpt(value)}")
    try:
        return json_format.ParseDict(value, cls()).SerializeToString()
    # json_format lets some TypeErrors and ValueErrors through unwrapped; all of them mean
    # the value does not fit the message.
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as e:
        raise ValueError(" ".join(str(e).split()).rstrip(".")) from e
    except SystemError as e:  # protobuf's lookup of a key that is not valid UTF-8 text
        raise ValueError("a key is not valid UTF-8 text (a lone surrogate escape?)") from e
