"""The life of a flow in the scheduler: pending → running → succeeded, failed or cancelled.

:class:`Lifecycle` starts flows, follows their jobs (started and ended events), their
executors' heartbeats, their failure queues and export streams, and ends them:

* a flow **succeeds** when every job has sent ``ended`` and every export stream reached
  end-of-stream;
* it **fails** at the first failure report, at a started job whose executor has been
  silent for ``heartbeat_timeout_s`` (kind LOST), at its deadline (DEADLINE), or when its
  queues vanish (BROKER); it is **cancelled** on request;
* whatever the end, the scheduler publishes stop (unless it succeeded) and deletes every
  queue of the flow, and only then records the end state and tells watchers.

Locking: ``self._lock`` guards the in-memory flows; broker calls are never made while
holding it, because the broker's I/O thread takes it in its callbacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import pika

import scheduler.service.progress as progress
from executor.core.errors import BrokerError, redact_url
from executor.core.objects import ObjectStore
from executor.pb.dagyo.v1.events_pb2 import Event, JobRef
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_CANCELLED,
    FAILURE_KIND_STOPPED,
)
from scheduler.flow.plan import Plan
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.admission import Admitter
from scheduler.service.broker import Broker
from scheduler.service.cached import ClusterCache, Prepared
from scheduler.service.config import CacheBounds
from scheduler.service.consumers import AckLater
from scheduler.service.ending import Ending
from scheduler.service.flowqueues import FlowQueues
from scheduler.service.flows import FlowParts, FlowTable
from scheduler.service.flowstate import ActiveFlow, FlowState
from scheduler.service.jobevents import job_ended, job_failed, job_started, jobs_heard, node_of
from scheduler.service.liveness import Liveness
from scheduler.service.metrics import SchedulerMetrics
from scheduler.service.newflow import new_flow
from scheduler.service.objects import FlowObjects
from scheduler.service.remote import StoreWatch, active, cancel_elsewhere
from scheduler.service.store import StoreWriter
from scheduler.service.subscriptions import Watchers
from scheduler.service.watchdog import due

log = logging.getLogger("dagyo.scheduler")


def not_ours(then: Callable[[], None]) -> None:
    """Never acks: a message of a flow owned elsewhere goes back at a reset (takeover.py)."""


class Lifecycle:
    """Starts, follows and ends flows.

    Args:
        store: where records, exports and failures are kept.
        broker: the scheduler's AMQP side.
        heartbeat_timeout_s: how long a started job's executor may be silent.
        export_cap_bytes: JSON bytes of exports kept per flow.
        watcher_events: live events queued for one watcher before it is dropped; 0 none.
        clock: monotonic seconds (heartbeat ages).
    """

    def __init__(
        self,
        store: StoreWriter,
        broker: Broker,
        metrics: SchedulerMetrics,
        *,
        heartbeat_timeout_s: float,
        export_cap_bytes: int,
        watcher_events: int = 0,
        clock: Callable[[], float] = time.monotonic,
        objects: FlowObjects | None = None,
        cache_bounds: CacheBounds | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.export_cap_bytes = export_cap_bytes
        self.table = FlowTable()
        self._lock = self.table.lock
        self._flows = self.table.flows
        self.watchers = Watchers(watcher_events)
        self.liveness = Liveness(heartbeat_timeout_s, clock=clock)
        parts = FlowParts(self.table, store, broker, metrics, self.watchers)
        self.objects = objects
        self.ending = Ending(parts, freed=lambda: self.admitter.wake(), objects=objects)
        self._fail = self.ending.fail
        self._finish = self.ending.finish
        self._clean_up = self.ending.clean_up
        # The cache of deterministic results, in the same store (docs/cache.md).
        self.cache = ClusterCache(
            store.cache, parts, bounds=cache_bounds or CacheBounds(), fail=self._fail
        )
        self.ending.on_end = self.cache.ended
        self.queues = FlowQueues(
            parts,
            self.ending,
            export_cap_bytes=export_cap_bytes,
            objects=objects.store if objects is not None else None,
            cache=self.cache,
        )
        self.admitter = Admitter(
            parts, self.liveness, self.ending, heartbeat_timeout_s=heartbeat_timeout_s
        )
        # Whether this scheduler owns a flow's shard now (scheduler.service.shards): a
        # message of a flow it does not own is left unacked, for the owner.
        self.owns: Callable[[str], bool] = lambda flow_id: True
        # Whether a flow taken over still waits to be resumed (scheduler.service.takeover).
        self.adopting: Callable[[str], bool] = lambda flow_id: False

    # --- starting --------------------------------------------------------------------------

    def submit(
        self,
        plan: Plan,
        *,
        name: str,
        created: float,
        deadline: float,
        sources: Mapping[str, str],
        tenant: str = "",
        flow_json: str = "",
        max_export_items: int = 0,
        max_export_bytes: int = 0,
        declared: bool = False,
        prepared: Prepared | None = None,
    ) -> str:
        """Start a planned flow: record it, declare its queues, publish its jobs.

        Args:
            created: Unix time of the submission.
            deadline: Unix time the flow fails at; 0 for none.
            sources: export name -> ``node.port`` it exports.
            tenant: whose flow it is (empty when the scheduler runs open).
            flow_json: the Flow JSON as submitted, kept with the record.
            max_export_items: export items kept with the record at most (0: no limit
                but the byte cap).
            max_export_bytes: bytes of exports kept with the record at most, below the
                scheduler's cap (0: that cap alone).
            declared: its queues exist already (a spare's, see scheduler.service.spares).
            prepared: what the cache decided (its plan is ``plan``): the cached nodes'
                jobs are not published, their streams are replayed.

        Raises:
            BrokerError: when the broker is not connected (nothing is recorded), or failed
                meanwhile (the flow is then failed).
        """
        flow_id = plan.flow_id
        flow = new_flow(
            plan,
            name=name,
            created=created,
            deadline=deadline,
            sources=sources,
            tenant=tenant,
            flow_json=flow_json,
            max_export_items=max_export_items,
            max_export_bytes=max_export_bytes,
            prepared=prepared,
        )
        record, runtime = flow.record, flow.runtime
        if not self.broker.connected:
            # Refused before it is recorded: a flow accepted now could only wait, pending,
            # for a broker that may not come back before its client gives up on it.
            raise BrokerError(
                f"the scheduler is not connected to the broker at {redact_url(self.broker.url)}"
                " (it keeps reconnecting): submit the flow again once the broker is back"
            )
        with self._lock:
            self.store.create(record, runtime)
            self._flows[flow_id] = flow
        try:
            cached = prepared.cached if prepared is not None else frozenset()
            if not declared:  # a spare's queues hold its recording queues too
                self.broker.declare_flow_queues(plan.queues)
            for mailbox in sorted(
                {job.progdef.mailbox for job in plan.jobs if job.descriptor.node not in cached}
            ):
                self.broker.declare_mailbox(mailbox)  # a refused one fails the submit now
            if prepared is not None:
                self.cache.begin(flow_id, prepared)
            self.queues.consume(flow)
        except BrokerError as e:
            with self._lock:
                flow.starting = False
            self._fail(flow_id, FAILURE_KIND_BROKER, str(e))
            raise
        with self._lock:
            flow.starting = False
            runtime.waiting = not runtime.finishing
            self._save(flow)
        if prepared is not None and prepared.replays:
            self.cache.replay(flow_id, prepared)
        self.admitter.admit_waiting()
        return flow_id

    # --- resuming --------------------------------------------------------------------------

    def resume(self) -> None:
        """Follow every loaded flow again, after a start or a reconnection.

        A flow whose queues are gone (the broker restarted) fails with kind BROKER; a flow
        that was ending is cleaned up again; the others are consumed again, and their
        executors' silence is counted from now.
        """
        self.liveness.resume()
        if self.objects is not None:
            self.objects.sweep(self._ended)
        with self._lock:
            flows = [f for f in self._flows.values() if not f.starting]
        self.resume_flows(f for f in flows if not self.adopting(f.id))

    def resume_flows(self, flows: Iterable[ActiveFlow], *, takeover: str = "") -> None:
        """Follow these loaded flows (see :meth:`resume`); ``takeover`` names the shard's
        previous owning scheduler when they were taken over from it."""
        for flow in flows:
            if flow.runtime.finishing:
                self.broker.submit(partial(self._clean_up, flow))
                continue
            # Its submit stopped midway (unless admitted here: its jobs are being published).
            pending = flow.record.state == FlowState.PENDING.proto and not flow.admitted_at
            if pending and not flow.runtime.waiting:
                error = (
                    f"{takeover} stopped while starting the flow: resubmit it"
                    if takeover
                    else "the scheduler stopped while starting the flow: resubmit it"
                )
                self._fail(flow.id, FAILURE_KIND_BROKER, error)
                continue
            if flow.runtime.replaying:  # its consumers would wait for the rest forever
                error = (
                    "the scheduler stopped while replaying the cached results of "
                    f"{', '.join(flow.runtime.replaying)}: resubmit the flow"
                )
                self._fail(flow.id, FAILURE_KIND_BROKER, error)
                continue
            try:
                missing = self.broker.missing_queues(flow.runtime.queues)
                if not missing:
                    self.queues.consume(flow)
            except BrokerError as e:
                log.warning("cannot resume flow %s yet: %s", flow.id, e)
                continue
            if missing:
                node = self.broker.lost_node
                where = f"broker node {node}" if node else "the broker"
                how = f", taken over from {takeover}" if takeover else ""
                error = (
                    f"the flow's queues are gone with {where} "
                    f"(it stopped or restarted{how}): {', '.join(missing)}; resubmit the flow"
                )
                self._fail(flow.id, FAILURE_KIND_BROKER, error)
        self.admitter.wake()

    @property
    def object_store(self) -> ObjectStore | None:
        """The object store of offloaded items (DAGYO_OBJECTS), or None."""
        return self.objects.store if self.objects is not None else None

    def _ended(self, flow_id: str) -> bool:
        """True for a flow the state records as ended (its objects may go)."""
        with self._lock:
            if flow_id in self._flows:
                return False
        record = self.store.get(flow_id, with_exports=False)
        return record is not None and not active(record)

    def on_disconnect(self, error: Exception) -> None:
        """The broker connection was lost: stop judging executors until it is back."""
        self.liveness.pause()

    # --- broker callbacks (on the broker's I/O thread) -------------------------------------

    def on_event(self, event: Event, properties: pika.BasicProperties) -> AckLater | None:
        """Handle one message of the scheduler's events queue; acked once what it changed
        is stored."""
        kind = event.WhichOneof("kind")
        if kind == "heartbeat" and event.heartbeat.mailbox:
            beat = event.heartbeat
            self.liveness.serving(
                beat.executor, beat.mailbox, draining=beat.draining, slots=beat.slots
            )
        if kind == "goodbye":
            self.liveness.gone(event.goodbye.executor, event.goodbye.mailbox)
            return None
        if kind is not None:
            self.liveness.heard(getattr(event, kind).executor)
        if kind == "heartbeat":
            self._progress(event.heartbeat.jobs)
            return self.store.when_written
        job = getattr(event, kind).job if kind in ("started", "ended") else None
        if job is not None and not self.owns(job.flow_id):
            return not_ours  # the shard's owner gets it once the channel is reset
        done = failed = None
        with self._lock:
            at = event.time or time.time()
            if kind == "started":
                flow = job_started(self.table, event.started, at, self.metrics)
            elif kind == "ended":
                # Any outcome but "" fails a flow that runs (before its counts are taken).
                failed = job_failed(self.table, event.ended) if event.ended.outcome else None
                flow = job_ended(self.table, event.ended, at, self.metrics)
                if flow is not None and not flow.runtime.finishing:
                    self.admitter.wake()  # its slot is free: a waiting flow may fit now
                    done = flow.id if flow.complete() and not flow.starting else None
            else:
                return None
            if flow is not None:
                self._save(flow, runtime=False)
                self.watchers.progress(flow.id, flow.record)
                if flow.runtime.finishing:  # the end may have waited for these counts only
                    self.ending.counted(flow)
        if failed is not None:
            # The executor published the failure report of any outcome but "stopped" itself.
            stopped = failed[1].kind == FAILURE_KIND_STOPPED
            self._finish(failed[0].id, FlowState.FAILED, failed[1], announce=stopped)
        if done is not None:
            self._finish(done, FlowState.SUCCEEDED)
        return self.store.when_written

    def _progress(self, jobs: Iterable[JobRef]) -> None:
        """Live item counts of running jobs, from a heartbeat: records and watchers move."""
        with self._lock:
            for flow in jobs_heard(self.table, jobs, self.metrics):
                self._save(flow, runtime=False)
                self.watchers.progress(flow.id, flow.record)

    # --- ending ----------------------------------------------------------------------------

    def cancel(self, flow_id: str, *, wait_s: float = 30.0) -> pb.FlowRecord | None:
        """Cancel a flow and wait (up to ``wait_s``) until it is cleaned up.

        Returns:
            The flow's record afterwards (unchanged when it had already ended), or None
            when no flow has that id.
        """
        with self._lock:
            flow = self._flows.get(flow_id)
        if flow is not None:
            self._fail(flow_id, FAILURE_KIND_CANCELLED, "cancelled by a user")
            if self.broker.connected:  # else the clean-up waits for the reconnection
                flow.ended.wait(wait_s)
            return self.store.get(flow_id)
        return cancel_elsewhere(self.store, flow_id, wait_s=wait_s)

    def tick(self) -> None:
        """Fail flows past their deadline, with a lost job, or with a job never taken; send
        again the deletes of ended flows the broker did not answer."""
        for end in due(self.table, self.liveness, self.broker, self.heartbeat_timeout_s):
            if self.owns(end.flow_id):  # else a paused scheduler woke: the owner judges
                self._fail(end.flow_id, end.kind, end.error, node=end.node)
        if self.broker.connected:
            self.ending.retry_deletes()

    def _save(self, flow: ActiveFlow, *, runtime: bool = True) -> None:
        """Store the flow's record, and its runtime unless only its nodes moved (a job
        event: the runtime of a wide flow is large, and it has not changed)."""
        self.store.save(flow.record, flow.runtime if runtime else None)

    # --- reading ---------------------------------------------------------------------------

    def watch(self, flow_id: str) -> Watchers.Subscription | None:
        """Subscribe to a flow's progress, exports (kept ones first) and end.

        Returns:
            None when no flow has that id.
        """
        with self._lock:
            flow = self._flows.get(flow_id)
            if flow is not None:
                return self.watchers.subscribe(flow_id, flow.record, self.store.exports(flow_id))
        record = self.store.get(flow_id)
        if record is None:
            return None
        # Not followed here but running: another scheduler owns it.
        return StoreWatch(self.store, record) if active(record) else self.watchers.replay(record)

    def edges_sampled(self, flow_id: str, depths: Mapping[str, int]) -> None:
        """Take the queue depths sampled for a flow's edges (edge target -> frames)."""
        with self._lock:
            flow, _ = node_of(self.table, flow_id, "")
            if flow is not None and progress.sampled(flow.record, depths, time.time()):
                self._save(flow, runtime=False)
                self.watchers.progress(flow.id, flow.record)
