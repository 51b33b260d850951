"""The ``dagyo.v1.Scheduler`` gRPC API: an adapter over the flow service (flowservice.py).

Each call names its caller (:func:`~scheduler.service.tenancy.caller`), asks the
:class:`~scheduler.service.flowservice.FlowService`, and translates its typed errors to
status codes (:func:`status_of`). Watch streams are capped per client and in all
(:class:`StreamSlots`), so unary calls always get a worker thread; problem lists and error
details are capped (limits.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from executor.core.errors import (
    BrokerError,
    DagyoError,
    FlowInvalid,
    FlowNotFound,
    LimitReached,
    PreconditionFailed,
    QuotaExceeded,
    RequestInvalid,
    Unauthenticated,
    Unavailable,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.catalogue import catalogue_answer
from scheduler.service.flowservice import REFUSALS
from scheduler.service.limits import capped_problems, refusal
from scheduler.service.subscriptions import StreamSlots
from scheduler.service.tenancy import caller

if TYPE_CHECKING:
    from scheduler.service.auth import Authenticator, Principal
    from scheduler.service.flowservice import FlowService
    from scheduler.service.trigger_sources import TriggerService

log = logging.getLogger("dagyo.scheduler")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name

T = TypeVar("T")

# The status code of each refusal of the flow service, most specific first.
_CODES: tuple[tuple[type[DagyoError], grpc.StatusCode], ...] = (
    (FlowNotFound, grpc.StatusCode.NOT_FOUND),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (RequestInvalid, grpc.StatusCode.INVALID_ARGUMENT),
    (FlowInvalid, grpc.StatusCode.INVALID_ARGUMENT),
    (PreconditionFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LimitReached, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BrokerError, grpc.StatusCode.UNAVAILABLE),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_of(error: DagyoError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details that answer a refusal of the flow service."""
    code = next((code for kind, code in _CODES if isinstance(error, kind)), None)
    return code or grpc.StatusCode.INTERNAL, refusal(error)


# Each Watch call holds a worker thread for its flow's whole life, so Watch streams may
# take all the workers but these (an eighth, at least 4): unary calls always get a thread.
def reserved_workers(workers: int) -> int:
    """The gRPC worker threads kept for unary calls, out of ``workers``."""
    return max(4, workers // 8)


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    """The ``dagyo.v1.Scheduler`` gRPC API over one flow service.

    Args:
        service: the use cases.
        authenticator: names each call's caller.
        workers: the server's worker threads (Watch streams leave some for unary calls).
        watches_per_client: Watch streams one client may hold at once.
        triggers: the scheduler's triggers, for their report; None when it has none.
    """

    def __init__(
        self,
        service: FlowService,
        *,
        authenticator: Authenticator,
        workers: int,
        watches_per_client: int,
        triggers: TriggerService | None = None,
    ) -> None:
        self._service = service
        self._auth = authenticator
        self._triggers = triggers
        self._streams = StreamSlots(
            per_client=watches_per_client, total=workers - reserved_workers(workers)
        )

    def _call(self, context: grpc.ServicerContext, use: Callable[[Principal], T]) -> T:
        """Run one use case as the caller; a refusal aborts the call with its status."""
        principal = caller(self._auth, context)
        try:
            return use(principal)
        except REFUSALS as e:
            context.abort(*status_of(e))
            raise  # pragma: no cover - abort raises

    def _stream(self, context: grpc.ServicerContext, events: Iterator[T]) -> Iterator[T]:
        """Yield a use case's events; a refusal while reading aborts the call."""
        try:
            yield from events
        except REFUSALS as e:
            context.abort(*status_of(e))

    @contextmanager
    def _slot(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Hold one of the client's Watch streams (RESOURCE_EXHAUSTED when it has none)."""
        client = context.peer()
        refused = self._streams.take(client)
        if refused is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            yield
        finally:
            self._streams.give_back(client)

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Check a flow, then start it.

        An invalid flow is answered with its problem lines; aborts with INVALID_ARGUMENT for
        a bad deadline, RESOURCE_EXHAUSTED past a quota, FAILED_PRECONDITION for a progdef no
        executor or autoscaler serves, and UNAVAILABLE when the broker is down.
        """

        def submit(principal: Principal) -> pb.SubmitResponse:
            try:
                flow_id = self._service.submit(
                    principal,
                    request.flow_json,
                    source=request.source,
                    sets=request.set,
                    deadline_s=request.deadline_s,
                    no_cache=request.no_cache,
                )
            except FlowInvalid as e:
                # In the answer, not the status: problem lines can outgrow gRPC metadata.
                return pb.SubmitResponse(problems=capped_problems(e.problems))
            return pb.SubmitResponse(flow_id=flow_id)

        return self._call(context, submit)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The record of one flow, with its kept exports."""
        return self._call(context, lambda principal: self._service.get(principal, request.flow_id))

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """A page of flows, newest first (``limit``, 0 for 100), without their exports."""
        page = self._call(
            context,
            lambda principal: self._service.list(
                principal, limit=request.limit, token=request.page_token
            ),
        )
        return pb.ListResponse(
            flows=page.records, next_page_token=page.next_token, every_tenant=page.every_tenant
        )

    def Cancel(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Cancel a flow and answer its record once its queues are deleted."""
        return self._call(
            context, lambda principal: self._service.cancel(principal, request.flow_id)
        )

    def ExportItems(  # noqa: N802
        self, request: pb.ExportItemsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        """The items kept with one export of a flow, offloaded ones included, in chunks."""
        chunks = self._call(
            context,
            lambda principal: self._service.exports.items(
                principal, request.flow_id, request.export
            ),
        )
        yield from self._stream(context, chunks)

    def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvent]:
        """Stream a flow's progress, every export in order, and last its ``end`` record.

        Aborts with RESOURCE_EXHAUSTED when the client (or the scheduler) holds as many
        streams as it may, or when the client fell too far behind reading.
        """
        events = self._call(
            context,
            lambda principal: self._service.watch(
                principal, request.flow_id, active=context.is_active
            ),
        )
        with self._slot(context):
            yield from self._stream(context, events)

    def Failures(self, request: pb.FailuresRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """A page of the failure reports recorded so far, of one flow or of every flow."""
        page = self._call(
            context,
            lambda principal: self._service.failures(
                principal, request.flow_id, limit=request.limit, token=request.page_token
            ),
        )
        return pb.FailuresResponse(failures=page.reports, next_page_token=page.next_token)

    def Versions(self, request: pb.VersionsRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Each progdef version known (current, draining, retired), its jobs waiting, running."""
        return pb.VersionsResponse(versions=self._call(context, self._service.versions))

    def Invoke(  # noqa: N802
        self, request: pb.InvokeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.InvokeEvent]:
        """Run one progdef as a one-node flow: its flow id, each output item, its end.

        Aborts with INVALID_ARGUMENT (the problem lines) for an unknown progdef or port, a
        malformed input or a value of the wrong type, and as Submit and Watch do.
        """
        invocation = self._call(
            context,
            lambda principal: self._service.invoke(
                principal, request.progdef, request.input, active=context.is_active
            ),
        )
        yield pb.InvokeEvent(flow_id=invocation.flow_id)
        with self._slot(context):
            yield from self._stream(context, invocation.events)

    def Triggers(self, request: pb.TriggersRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The triggers read from DAGYO_TRIGGERS (another tenant's left out), with their
        last firings."""
        principal = caller(self._auth, context)
        triggers = self._triggers
        return pb.TriggersResponse(triggers=triggers.report(principal) if triggers else [])

    def Catalogue(self, request: pb.CatalogueRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The catalogue the caller may use, its types documented, their descriptor set."""
        return catalogue_answer(self._call(context, self._service.catalogue))

    def CacheList(self, request: pb.CacheListRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The cached results the caller's tenant sees (an admin: every tenant's)."""
        entries = self._call(context, self._service.cache.list)
        return pb.CacheListResponse(entries=entries)

    def CacheDrop(self, request: pb.CacheDropRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Remove the cached results of a progdef, a version or a key (all: no selector)."""
        dropped = self._call(
            context, lambda principal: self._service.cache.drop(principal, request.selector)
        )
        return pb.CacheListResponse(entries=dropped)
