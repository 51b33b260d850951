"""The scheduler's use cases, under every front door: submit, get, list, watch, cancel,
failures, catalogue, invoke (and the versions report).

:class:`FlowService` is plain Python: each method takes the caller's
:class:`~scheduler.service.auth.Principal`, returns records and reports, and refuses with a
typed error of executor.errors whose message is meant for the user. gRPC (api.py), the
triggers (trigger_firing.py) and the dashboard are adapters that translate those errors to
their own statuses. A user sees only its tenant's flows: another tenant's flow answers like
one that does not exist.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Protocol

from executor.core.errors import (
    BrokerError,
    FlowInvalid,
    FlowNotFound,
    LimitReached,
    PreconditionFailed,
    ProgdefInvalid,
    QuotaExceeded,
    RequestInvalid,
    Unavailable,
)
from executor.core.progdef import Catalogue
from scheduler.flow.cache_key import cache_keys
from scheduler.flow.check import check_flow
from scheduler.flow.invoke import SOURCE, invocation_flow
from scheduler.flow.overrides import apply_sets, parse_with_sets
from scheduler.flow.plan import plan_flow
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.admission import unserved
from scheduler.service.auth import Principal
from scheduler.service.cacheservice import CachedResultsService
from scheduler.service.downloads import ExportDownloads
from scheduler.service.hooks import Submission, SubmitHook
from scheduler.service.limits import MAX_MESSAGE_BYTES, cut, export_room_of
from scheduler.service.pages import FailurePage, FlowPage, Invocation
from scheduler.service.recording import recorded
from scheduler.service.spares import queue_shape
from scheduler.service.store import FailureRecords, FlowRecords
from scheduler.service.subscriptions import follow
from scheduler.service.tenancy import RunningFlows, admit_consts, visible_catalogue

if TYPE_CHECKING:
    from scheduler.flow.model import CheckedFlow, Flow
    from scheduler.service.broker import Broker
    from scheduler.service.catalogue import CatalogueCache
    from scheduler.service.lifecycle import Lifecycle
    from scheduler.service.spares import Spares
    from scheduler.service.versions import Versions

# Every refusal of a use case, each with a message for the user: the adapters translate
# these; any other error is a fault of the scheduler.
REFUSALS = (
    FlowInvalid,
    FlowNotFound,
    RequestInvalid,
    PreconditionFailed,
    QuotaExceeded,
    LimitReached,
    Unavailable,
    BrokerError,
)
# The refusals that may pass if the call comes again later (a trigger's event does).
RETRYABLE = (QuotaExceeded, LimitReached, PreconditionFailed, BrokerError, Unavailable)


class Records(FlowRecords, FailureRecords, Protocol):
    """What the use cases read of the store: flow records and failure reports."""


def not_found(flow_id: str) -> FlowNotFound:
    """The refusal of a call naming a flow the caller cannot see."""
    return FlowNotFound(
        flow_id,
        f"no flow {cut(flow_id, 100)!r} on this scheduler: `dagyo flow list` shows the flows "
        "it knows",
    )


def _found(flow_id: str, record: pb.FlowRecord | None) -> pb.FlowRecord:
    """The record read, or the refusal of a flow that is not there (any more)."""
    if record is None:
        raise not_found(flow_id)
    return record


class FlowService:
    """The use cases of one scheduler, over its parts.

    Args:
        catalogue: the catalogue the scheduler schedules from.
        store: flow records, exports and failure reports.
        lifecycle: starts, follows and ends flows.
        spares: flow ids whose queues were declared ahead, by shape.
        versions: the progdef versions known.
        broker: asked whether a progdef's mailbox has consumers; None to take every progdef
            without autoscaler as served (``DAGYO_REQUIRE_CONSUMERS=0``).
        stopping: set once the scheduler stops; watches then end.
        max_message_bytes: the largest message a record is read back in
            (``DAGYO_MAX_MESSAGE_BYTES``): a flow's record must fit, its exports in the rest.
        hooks: what every submit runs within (tracing), outermost first.
        clock: Unix time (a flow's creation and deadline).
    """

    def __init__(
        self,
        *,
        catalogue: CatalogueCache,
        store: Records,
        lifecycle: Lifecycle,
        spares: Spares,
        versions: Versions,
        broker: Broker | None,
        stopping: threading.Event,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        hooks: Sequence[SubmitHook] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalogue = catalogue
        self._store = store
        self._lifecycle = lifecycle
        self._spares = spares
        self._versions = versions
        self._broker = broker
        self._stopping = stopping
        self._max_message_bytes = max_message_bytes
        self._hooks = list(hooks)
        self._clock = clock
        self._running = RunningFlows(store.running_count)
        self.exports = ExportDownloads(lifecycle)  # `dagyo flow export`
        self.cache = CachedResultsService(lifecycle)  # `dagyo cache list|drop`

    def catalogue(self, principal: Principal) -> Catalogue:
        """The progdefs the caller may use (another tenant's do not exist for it).

        Raises:
            PreconditionFailed: the scheduler's catalogue folder is invalid.
        """
        try:
            catalogue = self._catalogue()
        except ProgdefInvalid as e:
            raise PreconditionFailed(
                ["the scheduler's progdef catalogue is invalid:", *e.problems]
            ) from e
        return visible_catalogue(catalogue, principal)

    def submit(
        self,
        principal: Principal,
        flow_json: str,
        *,
        source: str = "",
        sets: Sequence[str] = (),
        deadline_s: float = 0.0,
        no_cache: bool = False,
    ) -> str:
        """Check a flow, then start it as the caller's; returns its flow id.

        Args:
            flow_json: the Flow JSON.
            source: names the flow in problems (``flow.json`` when empty).
            sets: ``--set`` overrides, each ``node.port=JSON``.
            deadline_s: seconds the flow may run; 0 for the tenant's default, or none.
            no_cache: run every node, none replayed from the cache (docs/cache.md).

        Raises:
            FlowInvalid: the flow (with its overrides) fails its checks; every problem.
            RequestInvalid: ``deadline_s`` is not a finite number of seconds.
            QuotaExceeded: the flow asks for more than the caller's quotas allow.
            PreconditionFailed: the catalogue is invalid, or a progdef of the flow has
                nothing serving it (or could never hold the flow's jobs).
            BrokerError: the broker is away, or failed the flow's start.
        """
        source = source or "flow.json"
        catalogue = self.catalogue(principal)
        submitted, flow_json = flow_json, apply_sets(flow_json, sets, source=source)
        flow = parse_with_sets(submitted, sets, source=source)
        admit_consts(principal, flow)  # before the check, which encodes every value
        checked = check_flow(flow, catalogue, source=source)
        export_room = export_room_of(flow, flow_json, self._max_message_bytes, source=source)
        if not 0 <= deadline_s < float("inf"):  # NaN compares false to all
            raise RequestInvalid(
                [
                    "deadline_s must be a finite number of seconds, or 0 for no deadline; got "
                    f"{deadline_s:g}"
                ]
            )
        # The flow counts against max_running_flows from its quota check to its record.
        admitting = self._running.admitting(principal, nodes=len(flow.nodes), deadline_s=deadline_s)
        with admitting as granted_s:
            flow_id = self._start(
                principal, flow, checked, flow_json, granted_s, export_room, no_cache
            )
        self._spares.submitted()
        return flow_id

    def _start(
        self,
        principal: Principal,
        flow: Flow,
        checked: CheckedFlow,
        flow_json: str,
        deadline_s: float,
        export_room: int,
        no_cache: bool,
    ) -> str:
        problems = unserved(checked, self._lifecycle.liveness, self._broker)
        if problems:
            raise PreconditionFailed(problems)
        # A flow shaped like a recent one takes the flow id whose queues were declared
        # ahead for it (scheduler.service.spares).
        keys = cache_keys(checked)
        spare = self._spares.take(queue_shape(checked, recorded(checked, keys)))
        flow_id = spare or self._spares.fresh_id()
        created = self._clock()
        deadline = created + deadline_s if deadline_s else 0.0
        plan = plan_flow(checked, flow_id=flow_id, deadline=deadline)
        cache = self._lifecycle.cache.prepare(
            principal.tenant, checked, plan, refresh=no_cache, keys=keys
        )
        plan = cache.plan
        jobs = [job.descriptor for job in plan.jobs if job.descriptor.node not in cache.cached]
        submission = Submission(flow_id=flow_id, name=flow.name, tenant=principal.tenant, jobs=jobs)
        with ExitStack() as around:
            for hook in self._hooks:
                around.enter_context(hook.around_submit(submission))
            self._lifecycle.submit(
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
                prepared=cache,
            )
        return flow_id

    def get(self, principal: Principal, flow_id: str) -> pb.FlowRecord:
        """The record of one flow, with its kept exports.

        Raises:
            FlowNotFound: no such flow, or another tenant's.
        """
        self._visible(principal, flow_id)
        return _found(flow_id, self._store.get(flow_id))

    def list(self, principal: Principal, *, limit: int = 0, token: str = "") -> FlowPage:
        """A page of the flows the caller sees, newest first, without their exports.

        Args:
            limit: records at most; 0 for 100.
            token: the ``next_token`` of the page before; empty for the first.

        Raises:
            RequestInvalid: a token this scheduler did not give.
        """
        tenant = None if principal.admin else principal.tenant
        try:
            records, next_token = self._store.recent(limit, tenant=tenant, token=token)
        except ValueError as e:
            raise RequestInvalid([str(e)]) from None
        return FlowPage(records=records, next_token=next_token, every_tenant=principal.admin)

    def cancel(self, principal: Principal, flow_id: str) -> pb.FlowRecord:
        """Cancel a flow; its record once its queues are deleted.

        Raises:
            FlowNotFound: no such flow, or another tenant's.
        """
        self._visible(principal, flow_id)
        return _found(flow_id, self._lifecycle.cancel(flow_id))

    def watch(
        self, principal: Principal, flow_id: str, *, active: Callable[[], bool] = lambda: True
    ) -> Iterator[pb.WatchEvent]:
        """A flow's progress, every export in order, and last its ``end`` record.

        The flow is looked up now; the events come as the returned iterator is read.

        Args:
            active: False once the caller went away (the events then stop).

        Raises:
            FlowNotFound: no such flow, or another tenant's (now).
            Unavailable: (while reading) the scheduler is stopping.
            LimitReached: (while reading) the caller fell too far behind.
        """
        self._visible(principal, flow_id)
        return self._follow(flow_id, active)

    def _follow(self, flow_id: str, active: Callable[[], bool]) -> Iterator[pb.WatchEvent]:
        subscription = self._lifecycle.watch(flow_id)
        if subscription is None:
            raise not_found(flow_id)
        yield from follow(subscription, flow_id, active=active, stopping=self._stopping)

    def failures(
        self, principal: Principal, flow_id: str = "", *, limit: int = 0, token: str = ""
    ) -> FailurePage:
        """A page of the failure reports recorded so far, of one flow or (``""``) of every
        flow the caller sees, oldest first.

        Raises:
            FlowNotFound: ``flow_id`` names no flow, or another tenant's.
            RequestInvalid: a token this scheduler did not give.
        """
        if flow_id:
            self._visible(principal, flow_id)
        tenant = None if principal.admin else principal.tenant
        try:
            reports, next_token = self._store.failures(
                flow_id, tenant=tenant, limit=limit, token=token
            )
        except ValueError as e:
            raise RequestInvalid([str(e)]) from None
        return FailurePage(reports=reports, next_token=next_token)

    def invoke(
        self,
        principal: Principal,
        progdef: str,
        inputs: Sequence[str] = (),
        *,
        active: Callable[[], bool] = lambda: True,
    ) -> Invocation:
        """Run one progdef on items (each ``PORT=JSON``) as a one-node flow, started now.

        It is checked, held to the caller's quotas and recorded exactly as a flow is.

        Raises:
            FlowInvalid: an unknown progdef or port, a malformed input, a value of the
                wrong type.
            The errors of :meth:`submit`, and of :meth:`watch` while reading the events.
        """
        flow_json = invocation_flow(progdef, inputs, self.catalogue(principal))
        flow_id = self.submit(principal, flow_json, source=f"{SOURCE} {progdef}")
        return Invocation(flow_id, self._outputs(self.watch(principal, flow_id, active=active)))

    def _outputs(self, events: Iterator[pb.WatchEvent]) -> Iterator[pb.InvokeEvent]:
        for event in events:
            kind = event.WhichOneof("kind")
            if kind == "export":
                yield pb.InvokeEvent(output=event.export)
            elif kind == "end":
                yield pb.InvokeEvent(end=event.end)

    def versions(self, principal: Principal) -> builtins.list[pb.ProgdefVersion]:
        """Each progdef version known (current, draining, retired), its jobs waiting and
        running.

        Raises:
            PreconditionFailed: the catalogue is invalid.
            BrokerError: the broker cannot be asked.
        """
        visible = self.catalogue(principal)  # another tenant's progdef does not exist
        try:
            report = self._versions.report()
        except ProgdefInvalid as e:
            raise PreconditionFailed([str(e)]) from e
        return [v for v in report if principal.admin or v.progdef in visible]

    def _visible(self, principal: Principal, flow_id: str) -> None:
        record = self._store.get(flow_id, with_exports=False)
        if record is None or not principal.sees(record.tenant):
            raise not_found(flow_id)
