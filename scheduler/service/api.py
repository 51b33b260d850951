"""The ``dagyo.v1.Scheduler`` gRPC API: each call checks its caller, then asks the
:class:`~scheduler.service.server.Scheduler` it serves (flows, records, catalogue).

Watch streams are capped per client and in all (:class:`StreamSlots`), so unary calls
always get a worker thread; problem lists and error details are capped (limits.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import grpc

from executor.core.errors import BrokerError, FlowInvalid, ProgdefInvalid
from scheduler.flow.check import check_flow
from scheduler.flow.overrides import apply_sets, parse_with_sets
from scheduler.flow.plan import plan_flow
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.catalogue import catalogue_answer
from scheduler.service.invoke import invoke
from scheduler.service.limits import capped_problems, cut, details, record_bytes
from scheduler.service.spares import new_flow_id, shape_of
from scheduler.service.subscriptions import StreamSlots
from scheduler.service.tenancy import (
    QuotaExceeded,
    admit,
    admit_consts,
    caller,
    visible_catalogue,
)

if TYPE_CHECKING:
    from executor.core.tracing import Tracing
    from scheduler.flow.model import CheckedFlow
    from scheduler.service.auth import Authenticator
    from scheduler.service.catalogue import CatalogueCache
    from scheduler.service.config import SchedulerSettings
    from scheduler.service.lifecycle import Lifecycle
    from scheduler.service.spares import Spares
    from scheduler.service.store import StoreWriter
    from scheduler.service.trigger_sources import TriggerService
    from scheduler.service.versions import Versions

log = logging.getLogger("dagyo.scheduler")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name


# Each Watch call holds a worker thread for its flow's whole life, so Watch streams may
# take all the workers but these (an eighth, at least 4): unary calls always get a thread.
def reserved_workers(workers: int) -> int:
    """The gRPC worker threads kept for unary calls, out of ``workers``."""
    return max(4, workers // 8)


# How often a Watch call looks whether its client or the scheduler went away.
WATCH_POLL_S = 0.5


class Scheduler(Protocol):
    """What the API asks of the scheduler it serves (server.py's ``Scheduler``)."""

    authenticator: Authenticator
    settings: SchedulerSettings
    store: StoreWriter
    lifecycle: Lifecycle
    versions: Versions
    spares: Spares
    tracing: Tracing
    triggers: TriggerService | None
    catalogue: CatalogueCache

    @property
    def stopping(self) -> bool:
        """True once the scheduler is stopping."""
        ...

    def unserved(self, checked: CheckedFlow) -> list[str]:
        """One line per progdef of the flow that nothing serves, or could never hold it."""
        ...


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    """The ``dagyo.v1.Scheduler`` gRPC API of one :class:`Scheduler`."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._auth = scheduler.authenticator
        workers = scheduler.settings.grpc_workers
        self._streams = StreamSlots(
            per_client=scheduler.settings.watches_per_client,
            total=workers - reserved_workers(workers),
        )

    def _visible(self, context: grpc.ServicerContext, flow_id: str) -> pb.FlowRecord:
        """The record of a flow the caller may see; another tenant's flow is not found."""
        principal = caller(self._auth, context)
        record = self._scheduler.store.get(flow_id, with_exports=False)
        if record is None or not principal.sees(record.tenant):
            _not_found(context, flow_id)
        return record

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Check a flow, then start it.

        Aborts with INVALID_ARGUMENT (the problem lines, joined by newlines) for an invalid
        flow, FAILED_PRECONDITION for a progdef no executor or autoscaler serves, and
        UNAVAILABLE when the broker is down.
        """
        scheduler = self._scheduler
        principal = caller(self._auth, context)
        source = request.source or "flow.json"
        try:
            catalogue = scheduler.catalogue()
        except ProgdefInvalid as e:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                details(["the scheduler's progdef catalogue is invalid:", *e.problems]),
            )
        try:
            flow_json = apply_sets(request.flow_json, request.set, source=source)
            flow = parse_with_sets(request.flow_json, request.set, source=source)
            admit_consts(principal, flow)  # before the check, which encodes every value
            checked = check_flow(flow, visible_catalogue(catalogue, principal), source=source)
        except FlowInvalid as e:
            # In the answer, not the status: problem lines can outgrow gRPC metadata.
            return pb.SubmitResponse(problems=capped_problems(e.problems))
        except QuotaExceeded as e:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, details([str(e)]))
        # Get answers the record whole: what it may hold must fit in one message.
        export_room = scheduler.settings.max_message_bytes - record_bytes(flow, flow_json)
        if export_room <= 0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{source}: the flow is too large for its record to be read back: with its "
                f"nodes' and edges' progress and a failure it may take "
                f"{record_bytes(flow, flow_json)} bytes, more than the "
                f"{scheduler.settings.max_message_bytes} bytes a message may have "
                "(DAGYO_MAX_MESSAGE_BYTES): make the flow smaller",
            )
        if not 0 <= request.deadline_s < float("inf"):  # NaN compares false to all
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "deadline_s must be a finite number of seconds, or 0 for no deadline; got "
                f"{request.deadline_s:g}",
            )
        try:
            deadline_s = admit(
                principal,
                nodes=len(flow.nodes),
                deadline_s=request.deadline_s,
                running=scheduler.store.running_count(principal.tenant),
            )
        except QuotaExceeded as e:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, details([str(e)]))
        try:
            unserved = scheduler.unserved(checked)
            if unserved:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, details(unserved))
            flow_id = new_flow_id()
            created = time.time()
            deadline = created + deadline_s if deadline_s else 0.0
            plan = plan_flow(checked, flow_id=flow_id, deadline=deadline)
            # A flow shaped like a recent one takes the flow id whose queues were declared
            # ahead for it (scheduler.service.spares).
            spare = scheduler.spares.take(shape_of(flow_id, plan.queues))
            if spare is not None:
                flow_id = spare
                plan = plan_flow(checked, flow_id=flow_id, deadline=deadline)
            jobs = [job.descriptor for job in plan.jobs]  # each gets the trace context
            with scheduler.tracing.submit(
                flow_id=flow_id, name=flow.name, tenant=principal.tenant, jobs=jobs
            ):
                scheduler.lifecycle.submit(
                    plan,
                    name=flow.name,
                    created=created,
                    deadline=deadline,
                    sources={name: str(endpoint) for name, endpoint in flow.exports.items()},
                    tenant=principal.tenant,
                    flow_json=flow_json,
                    max_export_items=principal.quotas.max_export_items or 0,
                    max_export_bytes=export_room,
                    declared=spare is not None,
                )
            scheduler.spares.submitted()
        except BrokerError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, details([str(e)]))
        return pb.SubmitResponse(flow_id=flow_id)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The record of one flow, with its kept exports."""
        self._visible(context, request.flow_id)
        record = self._scheduler.store.get(request.flow_id)
        if record is None:
            _not_found(context, request.flow_id)
        return record

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """A page of flows, newest first (``limit``, 0 for 100), without their exports."""
        principal = caller(self._auth, context)
        tenant = None if principal.admin else principal.tenant
        try:
            flows, token = self._scheduler.store.recent(
                request.limit, tenant=tenant, token=request.page_token
            )
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.ListResponse(flows=flows, next_page_token=token, every_tenant=principal.admin)

    def Cancel(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Cancel a flow and answer its record once its queues are deleted."""
        self._visible(context, request.flow_id)
        record = self._scheduler.lifecycle.cancel(request.flow_id)
        if record is None:
            _not_found(context, request.flow_id)
        return record

    def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvent]:
        """Stream a flow's progress, every export in order, and last its ``end`` record.

        Aborts with RESOURCE_EXHAUSTED when the client (or the scheduler) holds as many
        streams as it may, or when the client fell too far behind reading.
        """
        self._visible(context, request.flow_id)
        client = context.peer()
        refused = self._streams.take(client)
        if refused is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            yield from self._watch(request.flow_id, context)
        finally:
            self._streams.give_back(client)

    def _watch(self, flow_id: str, context: grpc.ServicerContext) -> Iterator[pb.WatchEvent]:
        subscription = self._scheduler.lifecycle.watch(flow_id)
        if subscription is None:
            _not_found(context, flow_id)
        try:
            while context.is_active():
                if self._scheduler.stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the scheduler is stopping")
                event = subscription.next(WATCH_POLL_S)
                if subscription.overflowed:
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this watch of flow {flow_id} fell more than {subscription.limit} "
                        "events behind and was dropped (DAGYO_WATCHER_EVENTS); watch again to "
                        "get the kept exports and the end",
                    )
                if event is None:
                    continue
                yield event
                if event.HasField("end"):
                    return
        finally:
            subscription.close()

    def Failures(self, request: pb.FailuresRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """A page of the failure reports recorded so far, of one flow or of every flow."""
        store = self._scheduler.store
        principal = caller(self._auth, context)
        if request.flow_id:
            self._visible(context, request.flow_id)
        tenant = None if principal.admin else principal.tenant
        try:
            failures, token = store.failures(
                request.flow_id, tenant=tenant, limit=request.limit, token=request.page_token
            )
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.FailuresResponse(failures=failures, next_page_token=token)

    def Versions(self, request: pb.VersionsRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Each progdef version known (current, draining, retired), its jobs waiting, running."""
        caller(self._auth, context)
        try:
            versions = self._scheduler.versions.report()
        except ProgdefInvalid as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, details([str(e)]))
        except BrokerError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, details([str(e)]))
        return pb.VersionsResponse(versions=versions)

    def Invoke(  # noqa: N802
        self, request: pb.InvokeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.InvokeEvent]:
        """Run one progdef as a one-node flow: its flow id, each output item, its end."""
        principal = caller(self._auth, context)
        yield from invoke(
            request,
            context,
            catalogue=lambda: visible_catalogue(self._scheduler.catalogue(), principal),
            submit=self.Submit,
            watch=self.Watch,
        )

    def Triggers(self, request: pb.TriggersRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The triggers read from DAGYO_TRIGGERS (another tenant's left out), with their
        last firings."""
        principal = caller(self._auth, context)
        triggers = self._scheduler.triggers
        return pb.TriggersResponse(triggers=triggers.report(principal) if triggers else [])

    def Catalogue(self, request: pb.CatalogueRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The catalogue the caller may use, its types documented, their descriptor set."""
        principal = caller(self._auth, context)
        try:
            catalogue = self._scheduler.catalogue()
        except ProgdefInvalid as e:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                details(["the scheduler's progdef catalogue is invalid:", *e.problems]),
            )
        return catalogue_answer(visible_catalogue(catalogue, principal))


def _not_found(context: grpc.ServicerContext, flow_id: str) -> NoReturn:
    context.abort(
        grpc.StatusCode.NOT_FOUND,
        f"no flow {cut(flow_id, 100)!r} on this scheduler: `dagyo flow list` shows the flows "
        "it knows",
    )
    raise AssertionError("context.abort raises")
