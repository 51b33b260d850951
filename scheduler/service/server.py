"""The scheduler service: the gRPC API over the flow lifecycle, and ``serve``.

``dagyo scheduler`` calls :func:`serve`; tests start a :class:`Scheduler` in-process::

    scheduler = Scheduler(SchedulerSettings.from_env(address="localhost:0"))
    scheduler.start()          # gRPC listens and the broker connection is up
    ...                        # talk to scheduler.address
    scheduler.stop()

Besides ``dagyo.v1.Scheduler`` the server speaks the standard gRPC health service
(``grpc.health.v1.Health``; NOT_SERVING while the broker connection is down) and server
reflection, so ``grpcurl`` and Kubernetes gRPC probes work without the .proto files.
It also serves KEDA's external scaler (``externalscaler.ExternalScaler``, see scaler.py).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from executor.constants import SCHEDULER_METRICS_PORT, SCHEDULER_TICK_S
from executor.errors import (
    BrokerError,
    BrokerUnavailable,
    DagyoError,
    FlowInvalid,
    ProgdefInvalid,
    redact_url,
)
from executor.health import port_is_fixed
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1 import scheduler_pb2_grpc
from executor.pb.externalscaler import externalscaler_pb2_grpc
from executor.progdef import Progdef
from executor.tracing import Tracing
from scheduler.flow.check import check_flow
from scheduler.flow.model import CheckedFlow, parse_flow
from scheduler.flow.overrides import apply_sets
from scheduler.flow.plan import plan_flow
from scheduler.service.admission import never_fits
from scheduler.service.auth import Authenticator, TokenFile
from scheduler.service.broker import Broker
from scheduler.service.catalogue import CatalogueCache, catalogue_answer
from scheduler.service.config import DEFAULT_UI_ADDRESS, SchedulerSettings, broker_identity
from scheduler.service.invoke import invoke
from scheduler.service.lifecycle import Lifecycle
from scheduler.service.limits import capped_problems, cut, details
from scheduler.service.metrics import MetricsServer, SchedulerMetrics
from scheduler.service.sampler import QueueSampler
from scheduler.service.scaler import SERVICE_NAME as SCALER_SERVICE
from scheduler.service.scaler import ScalerServicer
from scheduler.service.state import FlowState, FlowStore
from scheduler.service.subscriptions import StreamSlots, Watchers
from scheduler.service.tenancy import (
    AuthInterceptor,
    QuotaExceeded,
    admit,
    caller,
    visible_catalogue,
)
from scheduler.service.versions import Versions
from scheduler.service.watchdog import autoscaled

if TYPE_CHECKING:
    from scheduler.service.dashboard import Dashboard
    from scheduler.service.trigger_sources import TriggerService

log = logging.getLogger("dagyo.scheduler")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name


# Each Watch call holds a worker thread for its flow's whole life, so Watch streams may
# take all the workers but these (an eighth, at least 4): unary calls always get a thread.
def reserved_workers(workers: int) -> int:
    """The gRPC worker threads kept for unary calls, out of ``workers``."""
    return max(4, workers // 8)


# How often a Watch call looks whether its client or the scheduler went away.
WATCH_POLL_S = 0.5
# How long stop() lets running calls finish before cancelling them.
STOP_GRACE_S = 1.0


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
            flow_json = apply_sets(request.flow_json, request.set)
            flow = parse_flow(flow_json, source=source)
            checked = check_flow(flow, visible_catalogue(catalogue, principal), source=source)
        except FlowInvalid as e:
            # In the answer, not the status: problem lines can outgrow gRPC metadata.
            return pb.SubmitResponse(problems=capped_problems(e.problems))
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
            flow_id = uuid.uuid4().hex[:12]
            created = time.time()
            deadline = created + deadline_s if deadline_s else 0.0
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
                )
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


class Scheduler:
    """The scheduler service in this process: gRPC, the broker connection, the state.

    Args:
        settings: see :class:`SchedulerSettings`.

    Attributes:
        address: ``host:port`` gRPC listens on, once started (a port 0 in the settings is
            replaced by the one picked).
        failed: set when the broker connection was lost for good; ``serve`` raises it.
    """

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.address = settings.address
        # Loaded once, and again when a file of the catalogue folder changes.
        self.catalogue = CatalogueCache(settings.progdefs)
        self.failed: BaseException | None = None
        self._stopping = threading.Event()
        self.metrics = SchedulerMetrics()
        # OpenTelemetry: a span per submit when OTEL_EXPORTER_OTLP_ENDPOINT is set.
        self.tracing = Tracing.from_env("dagyo-scheduler")
        self.store: FlowStore = None  # type: ignore[assignment]  # set by start()
        self.lifecycle: Lifecycle = None  # type: ignore[assignment]
        self.versions: Versions = None  # type: ignore[assignment]  # set by start()
        self._broker: Broker | None = None
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self._metrics_server: MetricsServer | None = None
        self._ticker: threading.Thread | None = None
        self._admitter: threading.Thread | None = None
        self.authenticator = Authenticator(
            TokenFile(settings.tokens_path) if settings.tokens_path else None
        )
        self.dashboard: Dashboard | None = None
        self.triggers: TriggerService | None = None
        self._sampler: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopping.is_set()

    def start(self) -> None:
        """Open the state, connect to the broker, resume running flows, listen on gRPC.

        Raises:
            BrokerUnavailable: when the broker cannot be reached (naming its URL).
            ProgdefInvalid: when the catalogue folder is missing or malformed.
            DagyoError: when the state file cannot be opened or the address is taken.
        """
        settings = self.settings
        # Fail fast on a bad catalogue; say once which progdefs it leaves out, and why.
        for left in self.catalogue().left_out.values():
            for line in left.lines():
                log.warning("%s", line)
        self.store = FlowStore(settings.state_path, owner=broker_identity(settings.queue_url))
        broker = Broker(
            settings.queue_url, on_connect=self._reconnected, on_disconnect=self._disconnected
        )
        self.lifecycle = Lifecycle(
            self.store,
            broker,
            self.metrics,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            export_cap_bytes=settings.export_cap_bytes,
        )
        self.lifecycle.watchers = Watchers(settings.watcher_events)
        self.versions = Versions(
            catalogue=self.catalogue,
            broker=broker,
            lifecycle=self.lifecycle,
            unserved_mailbox_s=settings.unserved_mailbox_s,
        )
        self.metrics.observe(
            flows_by_state=lambda: {s.value: n for s, n in self.store.count_by_state().items()},
            jobs_running=self.lifecycle.jobs_running,
            heartbeat_ages=self.lifecycle.heartbeat_ages,
        )
        try:
            broker.start()
        except BrokerUnavailable:
            self.store.close()
            raise
        self._broker = broker
        try:
            self.lifecycle.load()
            self.lifecycle.resume()
            broker.consume_events(self.lifecycle.on_event)
            self._sampler = QueueSampler(
                edges=self.lifecycle.sample_edges,
                depth=broker.queue_depth,
                record=self.lifecycle.edges_sampled,
            ).start(self._stopping)
            self._ticker = threading.Thread(
                target=self._tick, name="dagyo-scheduler-tick", daemon=True
            )
            self._ticker.start()
            self._admitter = threading.Thread(
                target=self.lifecycle.admission_loop,
                args=(self._stopping,),
                name="dagyo-scheduler-admission",
                daemon=True,
            )
            self._admitter.start()
            self._listen()
            if settings.triggers_dir is not None:
                self._start_triggers()
            if settings.metrics_port:
                self._metrics_server = MetricsServer(
                    port=settings.metrics_port,
                    host=settings.metrics_host,
                    metrics=self.metrics,
                    healthy=self._healthy,
                    fixed=port_is_fixed(settings.metrics_port, SCHEDULER_METRICS_PORT),
                )
                self._metrics_server.start()
            if settings.ui_address:
                self._start_dashboard(settings.ui_address)
        except BaseException:
            self.stop()
            raise

    def _listen(self) -> None:
        # so_reuseport off: a second scheduler on a taken address must fail, not share it.
        limit = self.settings.max_message_bytes
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self.settings.grpc_workers),
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
            interceptors=[AuthInterceptor(self.authenticator)],
        )
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        externalscaler_pb2_grpc.add_ExternalScalerServicer_to_server(ScalerServicer(self), server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, SCALER_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        cause: RuntimeError | None = None
        try:
            tls = self.settings.tls
            port = (
                server.add_insecure_port(self.settings.address)
                if tls is None
                else server.add_secure_port(self.settings.address, tls.credentials())
            )
        except RuntimeError as e:
            port, cause = 0, e
        if not port:
            raise DagyoError(
                f"cannot listen on {self.settings.address}: another scheduler may be running; "
                "set DAGYO_SCHEDULER to a free host:port"
            ) from cause
        self.address = f"{self.settings.host}:{port}"
        server.start()
        self._server = server
        self._set_health(serving=True)
        if self.authenticator.open:
            log.warning(
                "the scheduler runs open: any client reaching %s may submit, see and cancel "
                "every flow (set DAGYO_TOKENS to require tokens)",
                self.address,
            )

    def _start_triggers(self) -> None:
        from scheduler.service.trigger_sources import TriggerService

        # Its own servicer: triggers submit through Submit, as their tenant.
        self.triggers = TriggerService(
            self.settings,
            submit=SchedulerServicer(self).Submit,
            authenticator=self.authenticator,
            catalogue=self.catalogue,
        )
        self.triggers.start()

    def _start_dashboard(self, address: str) -> None:
        from scheduler.service.dashboard import Dashboard

        host, _, port = self.address.rpartition(":")
        local = f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]") else self.address

        def serve_on(where: str) -> Dashboard:
            return Dashboard(
                address=where,
                scheduler=local,
                catalogue=self.catalogue,
                open_mode=self.authenticator.open,
            )

        try:
            try:
                dashboard = serve_on(address)
            except OSError:
                if address != DEFAULT_UI_ADDRESS:
                    raise
                # The default port is taken (another scheduler here): any free one will do.
                dashboard = serve_on(address.rpartition(":")[0] + ":0")
        except OSError as e:
            raise DagyoError(
                f"cannot serve the dashboard on {address} ({e.strerror}): set DAGYO_UI to a "
                "free host:port, or to off"
            ) from e
        dashboard.start()
        self.dashboard = dashboard
        log.info("dashboard on %s", dashboard.url)

    def stop(self) -> None:
        """Stop gRPC, the broker connection and the state (idempotent); records stay."""
        self._stopping.set()
        if self.triggers is not None:  # it submits the batches it holds: first
            self.triggers.stop()
            self.triggers = None
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(STOP_GRACE_S).wait()
            self._server = None
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        for thread in (self._ticker, self._admitter, self._sampler):
            if thread is not None:
                thread.join()
        self._ticker = self._admitter = self._sampler = None
        self.tracing.shutdown()
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if self.store is not None:
            self.store.close()

    # --- for the servicer ------------------------------------------------------------------

    def unserved(self, checked: CheckedFlow) -> list[str]:
        """One line per progdef of the flow that nothing serves, or that could never hold it.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        asks = self.settings.require_consumers and self._broker is not None
        problems = []
        progdefs: dict[str, Progdef] = {p.name: p for p in checked.progdefs.values()}
        jobs = Counter(p.name for p in checked.progdefs.values())
        for name, progdef in sorted(progdefs.items()):
            if autoscaled(progdef) or not asks:
                capacity = None
            else:
                mailbox = progdef.mailbox
                served = self.lifecycle.liveness.serves(mailbox)
                if not served and not self._broker.consumer_count(mailbox):  # type: ignore[union-attr]
                    problems.append(
                        f"progdef {name}: no executor serves mailbox {mailbox} and it has no "
                        f"autoscaler: start one with `dagyo up` or "
                        f"`python -m executor {progdef.directory or name}`"
                    )
                    continue
                capacity = self.lifecycle.liveness.slots(mailbox)
            problem = never_fits(
                progdef, jobs[name], capacity=capacity, autoscaled=autoscaled(progdef)
            )
            if problem:
                problems.append(problem)
        return problems

    def mailbox_depth(self, mailbox: str) -> int | None:
        """Jobs waiting in ``mailbox``; None when it does not exist.

        Raises:
            BrokerError: when the broker is down or cannot be asked.
        """
        if self._broker is None:
            raise BrokerError("the scheduler is not connected to the broker")
        return self._broker.queue_depth(mailbox)

    # --- background ------------------------------------------------------------------------

    def _tick(self) -> None:
        interval = min(SCHEDULER_TICK_S, self.settings.heartbeat_timeout_s / 4)
        while not self._stopping.wait(interval):
            try:
                self.lifecycle.tick()
                if self._broker is not None and self._broker.connected:
                    self.versions.tick()
            except Exception:
                log.exception("the scheduler's periodic check failed")
            broker = self._broker
            if broker is not None and not broker.alive and self.failed is None:
                self.failed = broker.failed or BrokerUnavailable(self.settings.queue_url)
                self._set_health(serving=False)

    def _reconnected(self) -> None:
        self.lifecycle.resume()
        self._set_health(serving=True)

    def _disconnected(self, error: Exception) -> None:
        self.lifecycle.on_disconnect(error)
        self._set_health(serving=False)

    def _healthy(self) -> bool:
        return self._broker is not None and self._broker.connected

    def _set_health(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            self._health.set(service, status)


def serve(settings: SchedulerSettings, *, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM or SIGINT (or ``stop`` is set), then shut down.

    On the main thread, SIGTERM and SIGINT set ``stop`` unless the caller installed
    handlers of its own for them.

    Flow records stay in the state file; running flows are resumed by the next start.

    Raises:
        BrokerUnavailable: when the broker cannot be reached, or was lost for good.
        DagyoError: for a bad state file, catalogue or listen address.
    """
    stop = stop or threading.Event()
    scheduler = Scheduler(settings)
    scheduler.start()
    print(
        f"dagyo scheduler: gRPC on {scheduler.address}, broker {redact_url(settings.queue_url)}, "
        f"state {settings.state_path}, catalogue {settings.progdefs}"
        + (f", metrics on :{metrics.port}" if (metrics := scheduler._metrics_server) else ""),
        file=sys.stderr,
        flush=True,
    )
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            # A caller that handles the signals itself (the CLI) keeps its own handlers.
            if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if scheduler.failed is not None:
                raise scheduler.failed
    finally:
        scheduler.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


__all__ = ["FlowState", "Scheduler", "SchedulerServicer", "SchedulerSettings", "serve"]
