"""What a scheduler does with the shards it gains and loses (scheduler.service.shards).

A shard gained is *adopted*: its running flows are loaded from the store and resumed as a
restarted scheduler resumes them (their jobs keep running in their executors, never
started again), and the shard's events and failures queues are consumed. A flow's export
queues are consumed only once no other consumer holds them (a paused previous owner still
holds the frames it took and did not ack; they go back to the queue when it notices it
lost the shard, or when the broker closes its connection), so no frame is read out of
order: an export is acked only once stored, and the flow's position in each export (kept
with its runtime) drops what was stored already. A flow that cannot be adopted (it was
being started, or its queues are gone) fails with a reason naming the takeover.

A shard lost (taken over while this scheduler was paused or cut off, or given up to a
newcomer) is *dropped*: its flows leave the flow table at once, never ended here and their
queues never deleted, the shard's queues are consumed no more, and the work channel is
opened again so that every message delivered and not acked goes back to its queue for
the new owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from executor.core.constants import shard_events_queue, shard_failures_queue, shard_of
from executor.core.errors import BrokerError
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_CANCELLED
from scheduler.service.broker import Broker
from scheduler.service.flowstate import ActiveFlow
from scheduler.service.lifecycle import Lifecycle
from scheduler.service.remote import active
from scheduler.service.store import StoreWriter

# How long giving up a shard waits for the submits in progress in it to finish starting.
STARTING_WAIT_S = 5.0

log = logging.getLogger("dagyo.scheduler.shards")

# A flow taken over whose export queues another consumer still holds waits this long at
# most for it to let go (the broker closes a dead peer's connection within two AMQP
# heartbeats), then is consumed all the same.
ADOPT_WAIT_S = 60.0
# How long dropping a shard waits for the writes queued before it.
DROP_FLUSH_S = 5.0


class Ownership:
    """Adopts the flows of shards gained and drops those of shards lost.

    Args:
        owner: this scheduler's owner id (named in the reasons of flows not adopted).
    """

    def __init__(
        self, lifecycle: Lifecycle, broker: Broker, store: StoreWriter, *, owner: str
    ) -> None:
        self._lifecycle = lifecycle
        self._broker = broker
        self._store = store
        self._owner = owner
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[ActiveFlow, float]] = {}  # flow id -> flow, since
        self._shards_waiting: dict[str, float] = {}  # shard -> since

    def adopt(self, shards: list[str]) -> None:
        """Load and follow the running flows of ``shards``; consume the shards' queues."""
        wanted = set(shards)
        lifecycle = self._lifecycle
        adopted: list[ActiveFlow] = []
        with lifecycle.table.lock:
            for record, runtime in self._store.active():
                if shard_of(record.id) in wanted and record.id not in lifecycle.table.flows:
                    flow = ActiveFlow(record, runtime)
                    lifecycle.table.flows[record.id] = flow
                    adopted.append(flow)
        now = time.monotonic()
        with self._lock:
            for flow in adopted:
                self._waiting[flow.id] = (flow, now)
            for shard in wanted:
                self._shards_waiting[shard] = now
        self.follow()
        if adopted:
            log.info("adopted %d running flows of shards %s", len(adopted), sorted(wanted))

    def waiting(self, flow_id: str) -> bool:
        """True while an adopted flow waits for its export queues to be let go."""
        with self._lock:
            return flow_id in self._waiting

    def follow(self) -> None:
        """Resume the adopted flows whose export queues no other consumer holds (or that
        waited ADOPT_WAIT_S); the scheduler's tick calls it."""
        self._consume_shards()
        with self._lock:
            waiting = list(self._waiting.values())
        if not waiting:
            return
        ready: list[ActiveFlow] = []
        now = time.monotonic()
        for flow, since in waiting:
            try:
                held = any(
                    self._broker.consumer_count(stream.queue)
                    for stream in flow.runtime.exports.values()
                )
            except BrokerError:
                continue
            if held and now - since < ADOPT_WAIT_S:
                continue
            ready.append(flow)
        with self._lock:
            for flow in ready:
                self._waiting.pop(flow.id, None)
        if ready:
            # Their jobs' silence counts from now, as after a restart: their events may
            # still wait in the shard's queue, or come back from the previous owner.
            self._lifecycle.liveness.resume()
            self._lifecycle.resume_flows(ready, takeover=self._takeover_reason(ready))

    def _consume_shards(self) -> None:
        """Consume the queues of the shards gained once no other consumer holds them (a
        paused previous owner holds what it took until it lets go): an event it holds then
        comes to this scheduler, not one of its jobs' events to each."""
        with self._lock:
            waiting = dict(self._shards_waiting)
        lifecycle = self._lifecycle
        now = time.monotonic()
        for shard, since in sorted(waiting.items()):
            queues = (shard_events_queue(shard), shard_failures_queue(shard))
            try:
                held = any(self._broker.consumer_count(q) for q in queues)
                if held and now - since < ADOPT_WAIT_S:
                    continue
                self._broker.consume_shard(shard, lifecycle.on_event, lifecycle.queues.on_failure)
            except BrokerError as e:  # consumed again with the rest once reconnected
                log.warning("cannot consume shard %s yet: %s", shard, e)
                continue
            with self._lock:
                self._shards_waiting.pop(shard, None)

    def carry_out_cancels(self) -> None:
        """Cancel the flows owned here whose cancel another scheduler was asked (the
        scheduler's tick); a request for a flow that ended is forgotten."""
        lifecycle = self._lifecycle
        cancels = self._store.cancels
        for flow_id in cancels.cancel_requests():
            with lifecycle.table.lock:
                flow = lifecycle.table.flows.get(flow_id)
            if flow is not None:
                if lifecycle.owns(flow_id):
                    lifecycle.ending.fail(flow_id, FAILURE_KIND_CANCELLED, "cancelled by a user")
                    cancels.cancelled(flow_id)
            elif not active(self._store.get(flow_id, with_exports=False)):
                cancels.cancelled(flow_id)

    def _takeover_reason(self, flows: Iterable[ActiveFlow]) -> str:
        shards = sorted({shard_of(f.id) for f in flows})
        return f"the scheduler owning shard {','.join(shards)} before {self._owner}"

    def drop(self, shards: list[str]) -> None:
        """Forget the flows of ``shards`` (never ending them) and give back to the broker
        every message delivered and not acked."""
        lost = set(shards)
        for shard in sorted(lost):
            try:
                self._broker.stop_shard(shard)
            except BrokerError:
                pass  # the connection is gone: nothing is consumed
        lifecycle = self._lifecycle
        # A submit in progress finishes first (bounded): dropped while starting, its flow
        # would be recorded as never started and failed by the next owner.
        deadline = time.monotonic() + STARTING_WAIT_S
        while time.monotonic() < deadline:
            with lifecycle.table.lock:
                flows = list(lifecycle.table.flows.items())
            if not any(f.starting for flow_id, f in flows if shard_of(flow_id) in lost):
                break
            time.sleep(0.02)
        with lifecycle.table.lock:
            gone = [f for f in lifecycle.table.flows if shard_of(f) in lost]
            for flow_id in gone:
                del lifecycle.table.flows[flow_id]
        for flow_id in gone:
            # Its recordings and replays go too: taken again later, the flow is loaded from
            # the store as a restart loads it, its recordings read to their end and dropped
            # (the frames this scheduler read meanwhile were acked, not stored).
            lifecycle.cache.ended(flow_id, succeeded=False)
        with self._lock:
            for flow_id in gone:
                self._waiting.pop(flow_id, None)
            for shard in lost:
                self._shards_waiting.pop(shard, None)
        # Given back to the broker first: a flow's events must not wait for this
        # scheduler's writes, refused anyway when the shard was taken over; and stored before
        # the shard is released (its next owner loads them).
        self._broker.reset()
        self._store.flush(DROP_FLUSH_S)
        log.warning("dropped %d flows of shards %s: another scheduler owns them", len(gone), shards)
