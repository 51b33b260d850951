"""The flow model: a :class:`Flow` as read, and the type-checked :class:`CheckedFlow`.

:func:`scheduler.flow.parse.parse_flow` checks the shape of the JSON and builds a :class:`Flow`;
:func:`check_flow` checks it against the progdef catalogue (the rules of DESIGN.md, "Flow
JSON") and binds type variables, giving the :class:`CheckedFlow` that the embedded runner
and the scheduler link into jobs. Each reports every problem it finds at once, one a line,
as ``<file>: <where>: <what>; <fix>``::

    hello.json: edge names.src -> hi.nmae: hi.nmae: no such input on progdef greet (did you mean 'name'?)
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.core.progdef import Progdef
from scheduler.flow.problems import SET_OPTION

# The largest flow: every node is a job and every edge a queue, all live at once (a
# 3000-wide fan-out runs embedded in about 3 s: bench/fanout.py).
MAX_FLOW_NODES = 5000
MAX_FLOW_EDGES = 10000
# Every const value is checked and encoded at submit (about 15 us each) and travels in its
# job's descriptor; tokens' quotas (max_const_values) bound them further.
MAX_FLOW_CONST_VALUES = 100_000
IN = "in"
OUT = "out"
Port = tuple[str, str, str]  # (node, IN or OUT, port): the key of CheckedFlow.port_types


@dataclass(frozen=True)
class Endpoint:
    """One port of one node, written ``"node.port"`` in Flow JSON."""

    node: str
    port: str

    def __str__(self) -> str:
        return f"{self.node}.{self.port}"


@dataclass(frozen=True)
class Edge:
    """A stream from an output port (``source``) to an input port (``target``)."""

    source: Endpoint
    target: Endpoint


@dataclass(frozen=True)
class Const:
    """Fixed items fed to an input instead of an edge.

    Attributes:
        values: each entry of ``"values"`` as written: the JSON form of one item.
        from_set: given at submit by ``--set``, not written in the flow file.
    """

    target: Endpoint
    values: tuple[Any, ...]
    from_set: bool = False

    @property
    def where(self) -> str:
        """What its problems are about: ``const to names.count``, or ``--set names.count``
        for a const given at submit (then a problem line does not name the flow file)."""
        return f"{SET_OPTION} {self.target}" if self.from_set else f"const to {self.target}"


@dataclass(frozen=True)
class Node:
    """One vertex of a flow: a name and the progdef it runs."""

    name: str
    progdef: str


@dataclass(frozen=True)
class Flow:
    """A flow as written, before it is checked against a catalogue.

    Attributes:
        nodes: node name -> node, in the order of the JSON.
        exports: export name -> the output endpoint it delivers.
    """

    name: str
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    consts: tuple[Const, ...]
    exports: Mapping[str, Endpoint]
    # Problems of shape that left the model whole (unknown keys): check_flow reports them
    # with every problem it finds, so one unknown key hides nothing.
    problems: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class CheckedFlow:
    """A flow that passed every check, with its types bound and its consts encoded.

    Attributes:
        progdefs: node name -> the progdef it runs.
        port_types: (node, ``"in"`` or ``"out"``, port) -> the port's typename, with type
            variables bound.
        const_items: input endpoint -> each const value serialized as the port's typename.
        order: every node name, in a topological order (producers before consumers).
    """

    flow: Flow
    progdefs: Mapping[str, Progdef]
    port_types: Mapping[Port, str]
    const_items: Mapping[Endpoint, tuple[bytes, ...]]
    order: tuple[str, ...]
    # Edges and exports indexed by port once, so planning looks each port up and stays linear
    # up to the largest flow (a scan of every edge per port took 15 s at the limits).
    _sources: dict[Endpoint, Endpoint] = field(default_factory=dict, init=False, repr=False)
    _consumers: dict[Endpoint, list[Endpoint]] = field(default_factory=dict, init=False, repr=False)
    _exports: dict[Endpoint, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for edge in self.flow.edges:
            self._sources.setdefault(edge.target, edge.source)
            self._consumers.setdefault(edge.source, []).append(edge.target)
        for name, endpoint in self.flow.exports.items():
            self._exports.setdefault(endpoint, []).append(name)

    def source_of(self, target: Endpoint) -> Endpoint | None:
        """Return the output feeding an input, or None when a const feeds it."""
        return self._sources.get(target)

    def consumers_of(self, source: Endpoint) -> tuple[Endpoint, ...]:
        """Return the inputs an output feeds, in edge order."""
        return tuple(self._consumers.get(source, ()))

    def exports_of(self, source: Endpoint) -> tuple[str, ...]:
        """Return the export names of an output, in the order of the JSON."""
        return tuple(self._exports.get(source, ()))
