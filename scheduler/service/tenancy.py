"""The scheduler's one door: every call but health checking names a caller, held to quotas.

:class:`AuthInterceptor` refuses a call without a valid token before any handler runs
(``UNAUTHENTICATED``); the handlers then ask :func:`caller` who is calling, to see only that
tenant's flows (another tenant's flow answers like one that does not exist) and to apply
:func:`admit` — the quotas of its token — at Submit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from executor.core.errors import QuotaExceeded, Unauthenticated
from executor.core.progdef import Catalogue, Progdef
from scheduler.flow.model import Flow
from scheduler.service.auth import OPEN, Authenticator, Principal, Quotas

log = logging.getLogger("dagyo.scheduler.auth")

# Health checking and KEDA's external scaler answer everyone: Kubernetes probes and KEDA
# carry no token (and the scaler tells only how many jobs a progdef has, never whose).
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/externalscaler.ExternalScaler/")
_PRINCIPAL_KEY = "dagyo-principal"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _denied(message: str, *, streaming: bool) -> grpc.RpcMethodHandler:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call without a valid bearer token (health checks excepted).

    Args:
        authenticator: whose token file decides; an open one lets everything through.
    """

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if self.authenticator.open or method.startswith(_OPEN_SERVICES):
            return continuation(handler_call_details)
        try:
            self.authenticator.authenticate(
                handler_call_details.invocation_metadata  # type: ignore[attr-defined]
            )
        except Unauthenticated as e:
            handler = continuation(handler_call_details)
            streaming = handler is not None and handler.response_streaming
            return _denied(str(e), streaming=bool(streaming))
        return continuation(handler_call_details)


def caller(authenticator: Authenticator, context: grpc.ServicerContext) -> Principal:
    """Who makes this call (:data:`OPEN` when the scheduler runs open).

    The interceptor has already refused a call without a valid token; a token revoked in
    between is refused here.
    """
    if authenticator.open:
        return OPEN
    try:
        return authenticator.authenticate(context.invocation_metadata())
    except Unauthenticated as e:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        raise  # pragma: no cover - abort raises


def visible_catalogue(catalogue: Mapping[str, Progdef], principal: Principal) -> Catalogue:
    """The progdefs a caller may use: a progdef limited to other tenants does not exist for
    it (a flow naming one gets the usual "no progdef named …", so the catalogue does not
    leak), nor does its entry among those left out."""

    def visible(tenants: tuple[str, ...] | None) -> bool:
        return tenants is None or principal.admin or principal.tenant in tenants

    left_out = catalogue.left_out if isinstance(catalogue, Catalogue) else {}
    return Catalogue(
        {name: progdef for name, progdef in catalogue.items() if visible(progdef.tenants)},
        left_out={name: left for name, left in left_out.items() if visible(left.tenants)},
    )


def admit_consts(principal: Principal, flow: Flow) -> None:
    """Apply a token's const quotas to a flow, before its values are checked and encoded.

    Raises:
        QuotaExceeded: naming the quota, its limit and the node or flow over it.
    """
    quotas = principal.quotas
    per_node: dict[str, int] = {}
    for const in flow.consts:
        per_node[const.target.node] = per_node.get(const.target.node, 0) + len(const.values)
    node, most = max(per_node.items(), key=lambda item: item[1], default=("", 0))
    if most > quotas.max_node_const_values:
        raise QuotaExceeded(
            "max_node_const_values",
            quotas.max_node_const_values,
            f"node {node} is fed {most} const values",
        )
    total = sum(per_node.values())
    if total > quotas.max_const_values:
        raise QuotaExceeded(
            "max_const_values", quotas.max_const_values, f"the flow has {total} const values"
        )


def admit(principal: Principal, *, nodes: int, deadline_s: float, running: int) -> float:
    """Apply a token's quotas to a Submit; returns the deadline the flow gets.

    Args:
        principal: the submitter.
        nodes: the flow's node count.
        deadline_s: the deadline asked for; 0 for none.
        running: the tenant's flows pending or running now.

    Raises:
        QuotaExceeded: naming the quota, its limit and the value asked.
    """
    quotas: Quotas = principal.quotas
    if quotas.max_nodes is not None and nodes > quotas.max_nodes:
        raise QuotaExceeded("max_nodes", quotas.max_nodes, f"the flow has {nodes} nodes")
    if quotas.max_running_flows is not None and running >= quotas.max_running_flows:
        raise QuotaExceeded(
            "max_running_flows",
            quotas.max_running_flows,
            f"the tenant has {running} flows pending or running; wait for one to end",
        )
    if not deadline_s and quotas.default_deadline_s is not None:
        deadline_s = quotas.default_deadline_s
    if quotas.max_deadline_s is not None:
        if not deadline_s:
            deadline_s = quotas.max_deadline_s
        elif deadline_s > quotas.max_deadline_s:
            raise QuotaExceeded(
                "max_deadline_s",
                quotas.max_deadline_s,
                f"the flow asks for a deadline of {_number(deadline_s)} s",
            )
    return deadline_s


class RunningFlows:
    """Applies a submit's quotas with its tenant's flows pending or running counted, and
    its place among them held until its flow is recorded: the check and the count are one
    step, so concurrent submits cannot pass ``max_running_flows`` together.

    Args:
        recorded: a tenant's flows pending or running, as the store has them.
    """

    def __init__(self, recorded: Callable[[str], int]) -> None:
        self._recorded = recorded
        self._lock = threading.Lock()
        self._starting: Counter[str] = Counter()

    @contextlib.contextmanager
    def admitting(self, principal: Principal, *, nodes: int, deadline_s: float) -> Iterator[float]:
        """Apply :func:`admit` and count the submit among its tenant's flows until the
        block ends (its flow recorded, or refused); yields the deadline the flow gets.

        Raises:
            QuotaExceeded: naming the quota, its limit and the value asked.
        """
        tenant = principal.tenant
        if principal.quotas.max_running_flows is None:  # nothing to count against
            yield admit(principal, nodes=nodes, deadline_s=deadline_s, running=0)
            return
        with self._lock:
            running = self._recorded(tenant) + self._starting[tenant]
            deadline = admit(principal, nodes=nodes, deadline_s=deadline_s, running=running)
            self._starting[tenant] += 1
        try:
            yield deadline
        finally:
            with self._lock:
                self._starting[tenant] -= 1
