"""The scheduler service (the gRPC API of api.py over the flow lifecycle) and ``serve``.
``dagyo scheduler`` calls :func:`serve`; tests start a :class:`Scheduler` in-process::

    scheduler = Scheduler(SchedulerSettings.from_env(address="localhost:0"))
    scheduler.start()          # gRPC listens and the broker connection is up
    ...                        # talk to scheduler.address
    scheduler.stop()

Besides ``dagyo.v1.Scheduler`` it serves gRPC health (NOT_SERVING while the broker or the
state's database is away, statehealth.py) and reflection, so ``grpcurl`` and Kubernetes
probes need no .proto file, and KEDA's external scaler (scaler.py)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health

from executor.core.drain import stop_signals
from executor.core.errors import BrokerUnavailable, redact_url
from executor.core.health import port_is_fixed
from executor.core.objects import open_store as open_objects
from executor.core.progdef import catalogue_folders
from executor.core.tracing import Tracing
from scheduler.constants import SCHEDULER_METRICS_PORT, SCHEDULER_TICK_S
from scheduler.service.api import SERVICE_NAME, SchedulerServicer
from scheduler.service.auth import Authenticator, TokenFile
from scheduler.service.broker import Broker
from scheduler.service.catalogue import CatalogueCache
from scheduler.service.config import SchedulerSettings, broker_identity
from scheduler.service.flowstate import FlowState
from scheduler.service.hooks import MetricsHook, TracingHook
from scheduler.service.lifecycle import Lifecycle
from scheduler.service.listening import listen
from scheduler.service.metrics import MetricsServer, SchedulerMetrics
from scheduler.service.objects import FlowObjects
from scheduler.service.sampler import QueueSampler
from scheduler.service.shards import Shards, process_owner
from scheduler.service.spares import Spares
from scheduler.service.statehealth import GuardedFlowService, StateHealth, publish_health
from scheduler.service.store import StoreWriter, is_postgres, open_store
from scheduler.service.store.writer import CLOSE_FLUSH_S
from scheduler.service.takeover import Ownership
from scheduler.service.versions import Versions

if TYPE_CHECKING:
    from scheduler.service.dashboard import Dashboard
    from scheduler.service.trigger_sources import TriggerService

log = logging.getLogger("dagyo.scheduler")

# How long stop() lets running calls finish before cancelling them.
STOP_GRACE_S = 1.0


class Scheduler:
    """The scheduler service in this process: gRPC, the broker connection, the state.

    Args:
        settings: see :class:`SchedulerSettings`.
        tracing: where its submit spans go; by default as the ``OTEL_*`` variables say.

    Attributes:
        address: ``host:port`` gRPC listens on, once started (a port 0 in the settings is
            replaced by the one picked).
        failed: set when the broker connection was lost for good; ``serve`` raises it.
    """

    def __init__(self, settings: SchedulerSettings, *, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.address = settings.address
        # Loaded once, and again when a file of the catalogue folder changes.
        self.catalogue = CatalogueCache(settings.progdefs)
        self.failed: BaseException | None = None
        self._stopping = threading.Event()
        self.metrics = SchedulerMetrics()
        self.tracing = tracing or Tracing.from_env("dagyo-scheduler")
        self.store: StoreWriter = None  # type: ignore[assignment]  # set by start()
        self.lifecycle: Lifecycle = None  # type: ignore[assignment]
        self.versions: Versions = None  # type: ignore[assignment]  # set by start()
        self.spares: Spares = None  # type: ignore[assignment]  # set by start()
        self.service: GuardedFlowService = None  # type: ignore[assignment]  # set by start()
        self.state_health = StateHealth(None, where="")  # a state that answers, until start()
        self._broker: Broker | None = None
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self._metrics_server: MetricsServer | None = None
        self._ticker: threading.Thread | None = None
        self._admitter: threading.Thread | None = None
        self._spares_thread: threading.Thread | None = None
        self._leases: threading.Thread | None = None
        self.shards: Shards = None  # type: ignore[assignment]  # set by start()
        self.ownership: Ownership = None  # type: ignore[assignment]  # set by start()
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
        # The broker's thread hands its writes to the store's writer thread; each write
        # of a flow carries the fence of its shard's lease (scheduler.service.shards).
        state = open_store(settings.state_path, owner=broker_identity(settings.queue_url))
        self.shards = Shards(
            state,
            owner=process_owner(),
            lease_s=settings.lease_s,
            gained=lambda shards: self.ownership.adopt(shards),
            lost=lambda shards: self.ownership.drop(shards),
            dead=lambda owners: self.spares.delete_of(owners),
            alone=not is_postgres(settings.state_path),
        )
        self.store = StoreWriter(state, fence_of=self.shards.fence, lease_lost=self.shards.refused)
        # A PostgreSQL store can be asked whether it answers (ping); a SQLite file always does.
        ping, where = getattr(self.store.store, "ping", None), redact_url(settings.state_path)
        health_changed = lambda: self._set_health(serving=self._healthy())  # noqa: E731
        self.state_health = StateHealth(ping, where=where, on_change=health_changed)
        broker = Broker(
            settings.queue_url,
            on_connect=self._reconnected,
            on_disconnect=self._disconnected,
            queue_type=settings.queue_type,
        )
        objects = FlowObjects(open_objects(settings.objects_url)) if settings.objects_url else None
        self.lifecycle = Lifecycle(
            self.store,
            broker,
            self.metrics,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            export_cap_bytes=settings.export_cap_bytes,
            watcher_events=settings.watcher_events,
            objects=objects,
            cache_bounds=settings.cache_bounds,
        )
        self.lifecycle.owns = self.lifecycle.queues.owns = self.shards.holds
        self.lifecycle.ending.owns = self.shards.holds
        self.ownership = Ownership(self.lifecycle, broker, self.store, owner=self.shards.owner)
        self.lifecycle.adopting = self.ownership.waiting
        self.spares = Spares(
            broker,
            self.store,
            idle_s=settings.spare_idle_s,
            shards=self.shards,
            alone=not is_postgres(settings.state_path),
        )
        self.versions = Versions(
            catalogue=self.catalogue,
            broker=broker,
            lifecycle=self.lifecycle,
            unserved_mailbox_s=settings.unserved_mailbox_s,
        )
        # The use cases, under every front door: gRPC, the triggers and the dashboard.
        self.service = GuardedFlowService(
            state=self.state_health,
            catalogue=self.catalogue,
            store=self.store,
            lifecycle=self.lifecycle,
            spares=self.spares,
            versions=self.versions,
            broker=broker if settings.require_consumers else None,
            stopping=self._stopping,
            max_message_bytes=settings.max_message_bytes,
            hooks=[TracingHook(self.tracing), MetricsHook(self.metrics)],
        )
        self.metrics.observe(
            flows_by_state=lambda: {s.value: n for s, n in self.store.count_by_state().items()},
            jobs_running=self.lifecycle.table.jobs_running,
            heartbeat_ages=self.lifecycle.liveness.ages,
        )
        try:
            broker.start()
        except BrokerUnavailable:
            self.store.close()
            raise
        self._broker = broker
        try:
            broker.consume_heartbeats(self.lifecycle.on_event)
            self.lifecycle.resume()  # nothing followed yet: objects of ended flows go
            self.shards.start()  # takes its shards, adopting their running flows
            self._leases = threading.Thread(
                target=self.shards.loop,
                args=(self._stopping,),
                name="dagyo-scheduler-leases",
                daemon=True,
            )
            self._leases.start()
            self._sampler = QueueSampler(
                edges=self.lifecycle.table.running_edges,
                depth=broker.queue_depth,
                record=self.lifecycle.edges_sampled,
            ).start(self._stopping)
            self._ticker = threading.Thread(
                target=self._tick, name="dagyo-scheduler-tick", daemon=True
            )
            self._ticker.start()
            self._admitter = threading.Thread(
                target=self.lifecycle.admitter.loop,
                args=(self._stopping,),
                name="dagyo-scheduler-admission",
                daemon=True,
            )
            self._admitter.start()
            self._spares_thread = threading.Thread(
                target=self.spares.loop,
                args=(self._stopping,),
                name="dagyo-scheduler-spares",
                daemon=True,
            )
            self._spares_thread.start()
            self.state_health.start(self._stopping)
            if settings.triggers_dir is not None:
                from scheduler.service.trigger_sources import TriggerService

                # Bound now, taking events once gRPC listens: triggers submit as their tenant.
                self.triggers = TriggerService(
                    settings,
                    firings=self.store.firings,
                    submit=self.service.submit,
                    authenticator=self.authenticator,
                    catalogue=self.catalogue,
                )
            self._listen()
            if self.triggers is not None:
                self.triggers.start()
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
                from scheduler.service.dashboard import open_dashboard

                self.dashboard = open_dashboard(
                    settings.ui_address, service=self.service, authenticator=self.authenticator
                )
                self.dashboard.start()
                log.info("dashboard on %s", self.dashboard.url)
        except BaseException:
            self.stop()
            raise

    def _listen(self) -> None:
        self._server, self.address = listen(
            self.settings,
            self._health,
            service=self.service,
            authenticator=self.authenticator,
            triggers=self.triggers,
            catalogue=self.catalogue,
            lifecycle=self.lifecycle,
            stopping=self._stopping,
        )
        self._set_health(serving=True)
        if self.authenticator.open:
            log.warning(
                "the scheduler runs open: any client reaching %s may submit, see and cancel "
                "every flow (set DAGYO_TOKENS to require tokens)",
                self.address,
            )

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
        threads = (self._ticker, self._admitter, self._sampler, self._spares_thread, self._leases)
        for thread in threads:
            if thread is not None:
                thread.join()
        self._ticker = self._admitter = self._sampler = self._spares_thread = None
        self.state_health.join()
        self._leases = None
        self.tracing.shutdown()
        if self._broker is not None:
            self.store.flush(CLOSE_FLUSH_S)  # stored, and acked while the broker is there
            self.spares.close()
            self.lifecycle.cache.close()
            self._broker.close()
            self._broker = None
            self.shards.close()  # the others take its shards at once
        if self.store is not None:
            self.store.close()

    # --- background ------------------------------------------------------------------------

    def _tick(self) -> None:
        interval = min(SCHEDULER_TICK_S, self.settings.heartbeat_timeout_s / 4)
        while not self._stopping.wait(interval):
            try:
                self.lifecycle.tick()
                self.ownership.follow()
                self.ownership.carry_out_cancels()
                # Cluster-wide: one scheduler, the leader, retires versions.
                if self._broker is not None and self._broker.connected and self.shards.leader:
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
        self.spares.disconnected()
        self._set_health(serving=False)

    def _healthy(self) -> bool:
        connected = self._broker is not None and self._broker.connected
        return connected and self.state_health.reachable

    def _set_health(self, *, serving: bool) -> None:
        # Serving only while the state's database answers too (scheduler.service.statehealth).
        serving = serving and self.state_health.reachable
        publish_health(self._health, ("", SERVICE_NAME), serving)


def serve(settings: SchedulerSettings, *, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM or SIGINT (or ``stop`` is set), then shut down.

    On the main thread, SIGTERM and SIGINT set ``stop`` unless the caller installed
    handlers of its own for them.

    Flow records stay in the state file; running flows are resumed by the next start.

    Raises:
        BrokerUnavailable: when the broker cannot be reached, or was lost for good.
        DagyoError: for a bad state file, catalogue or listen address.
    """
    scheduler = Scheduler(settings)
    scheduler.start()
    print(
        f"dagyo scheduler: gRPC on {scheduler.address}, broker {redact_url(settings.queue_url)}, "
        f"state {redact_url(settings.state_path)}, catalogue "
        f"{os.pathsep.join(str(f) for f in catalogue_folders(settings.progdefs))}"
        + (f", metrics on :{metrics.port}" if (metrics := scheduler._metrics_server) else ""),
        file=sys.stderr,
        flush=True,
    )
    # A caller that handles the signals itself (the CLI) keeps its own handlers.
    with stop_signals(stop=stop, unless_handled=True) as stopped:
        try:
            while not stopped.wait(0.5):
                if scheduler.failed is not None:
                    raise scheduler.failed
        finally:
            scheduler.stop()


__all__ = ["FlowState", "Scheduler", "SchedulerServicer", "SchedulerSettings", "serve"]
