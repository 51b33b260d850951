"""Binding the type variables of a flow's ports along its edges.

A port type is a typename or a type variable such as ``T``. A variable belongs to one
node: ``T`` of one ``slow`` node and ``T`` of another are unrelated, while the ports of one
node that share ``T`` share its binding. Every edge unifies the types at its two ends
(union-find), so a variable is bound by a typename that reaches it along edges, from
upstream or from downstream.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from executor.core.progdef import Progdef, is_type_variable
from scheduler.flow.model import IN, OUT, Const, Edge, Endpoint, Port
from scheduler.flow.problems import Problems

_Variable = tuple[str, str]  # (node, variable name)
_Term = str | _Variable  # a typename, or a node's type variable


# --- types --------------------------------------------------------------------------------


class _Bindings:
    """Union-find over type variables; each class may be bound to one typename."""

    def __init__(self) -> None:
        self._parent: dict[_Variable, _Variable] = {}
        self._typename: dict[_Variable, str] = {}
        # The edge that first bound a class, so a later mismatch can say why.
        self._bound_by: dict[_Variable, str] = {}

    def root(self, variable: _Variable) -> _Variable:
        parent = self._parent.setdefault(variable, variable)
        while parent != variable:
            grandparent = self._parent[parent]
            self._parent[variable] = grandparent
            variable, parent = parent, grandparent
        return variable

    def typename(self, term: _Term) -> str | None:
        return term if isinstance(term, str) else self._typename.get(self.root(term))

    def unify(self, a: _Term, b: _Term, edge: str) -> bool:
        """Make a and b the same type; return False, changing nothing, when they conflict."""
        a_type, b_type = self.typename(a), self.typename(b)
        if a_type is not None and b_type is not None:
            return a_type == b_type
        if isinstance(a, str):
            a, b, b_type = b, a, a_type
        assert not isinstance(a, str)
        a_root = self.root(a)
        if isinstance(b, str):
            self._typename[a_root] = b
            self._bound_by[a_root] = edge
            return True
        b_root = self.root(b)
        if a_root != b_root:
            self._parent[b_root] = a_root
            if b_type is not None:
                self._typename[a_root] = b_type
                self._bound_by[a_root] = self._bound_by[b_root]
        return True

    def describe(self, endpoint: Endpoint, term: _Term) -> str:
        """Return ``"n.port is <typename>"``, saying which edge bound a type variable."""
        typename = self.typename(term)
        if isinstance(term, str):
            return f"{endpoint} is {typename}"
        bound_by = self._bound_by[self.root(term)]
        return f"{endpoint} is {typename} (its type variable {term[1]} was bound by {bound_by})"


def _term(progdefs: Mapping[str, Progdef], node: str, side: str, port: str) -> _Term:
    progdef = progdefs[node]
    port_type = (progdef.inputs if side == IN else progdef.outputs)[port]
    return (node, port_type) if is_type_variable(port_type) else port_type


def bind_port_types(
    progdefs: Mapping[str, Progdef],
    edges: Iterable[Edge],
    consts: Iterable[Const],
    problem: Problems,
    *,
    on_cycles: Collection[str] = (),
) -> dict[Port, str]:
    """Unify the types along edges and return the typename of every port that has one.

    Args:
        progdefs: node name -> progdef, for the nodes whose progdef exists.
        edges: edges whose two ends name existing ports, in the order to unify them; of two
            conflicting edges the later one is reported.
        consts: consts whose target names an existing input.
        problem: told each type mismatch, each const into an unbound type variable and each
            output whose variable nothing binds.
        on_cycles: nodes on or behind a cycle, whose unbound outputs the cycle explains.

    Returns:
        (node, "in" | "out", port) -> typename; ports whose variable stayed unbound are
        left out.
    """
    bindings = _Bindings()
    fed_by_edge: set[tuple[str, str]] = set()
    for edge in edges:
        where = f"edge {edge.source} -> {edge.target}"
        source = _term(progdefs, edge.source.node, OUT, edge.source.port)
        target = _term(progdefs, edge.target.node, IN, edge.target.port)
        if bindings.unify(source, target, where):
            fed_by_edge.add((edge.target.node, edge.target.port))
        else:
            problem(
                where,
                f"type mismatch: {bindings.describe(edge.source, source)} but "
                f"{bindings.describe(edge.target, target)}",
            )
    port_types: dict[Port, str] = {}
    unbound: dict[Port, _Variable] = {}
    for node, progdef in progdefs.items():
        for side, ports in ((IN, progdef.inputs), (OUT, progdef.outputs)):
            for port in ports:
                term = _term(progdefs, node, side, port)
                typename = bindings.typename(term)
                if typename is not None:
                    port_types[(node, side, port)] = typename
                elif not isinstance(term, str):
                    unbound[(node, side, port)] = term
    # An unbound variable reaching an input that no good edge feeds is already explained by
    # another problem (no source, a broken edge, or the const reported below); reporting
    # every output downstream of it too would bury the cause.
    explained = {
        bindings.root(variable)
        for (node, side, port), variable in unbound.items()
        if side == IN and (node, port) not in fed_by_edge
    }
    for const in consts:
        variable = unbound.get((const.target.node, IN, const.target.port))
        if variable is not None:
            problem(
                const.where,
                f"port has type variable {variable[1]}, which a const cannot bind; "
                "feed it from an edge",
            )
    for (node, side, port), variable in unbound.items():
        if side == OUT and node not in on_cycles and bindings.root(variable) not in explained:
            problem(
                f"{node}.{port}",
                f"output has type variable {variable[1]}, which nothing binds; feed an input "
                f"of type {variable[1]} from an edge",
            )
    return port_types
