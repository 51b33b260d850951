"""Ending a flow: note why, stop its jobs, delete its queues, then record its end.

Whatever the end, the scheduler publishes stop (unless the flow succeeded) and deletes
every queue of the flow, and only once the broker says they are all gone, and every job that
started has sent its final counts (or ``FINAL_COUNTS_WAIT_S`` passed), records the end state
and tells watchers; a clean-up the broker cannot do now is left "finishing" in the store for
the next resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from executor.core.errors import BrokerError
from executor.pb.dagyo.v1.events_pb2 import Stop
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_CANCELLED, FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flows import FlowParts
from scheduler.service.flowstate import (
    NODE_FAILED,
    NODE_PENDING,
    NODE_RUNNING,
    NODE_STOPPED,
    ActiveFlow,
    FlowState,
)
from scheduler.service.jobevents import awaited_counts
from scheduler.service.limits import bounded_failure
from scheduler.service.objects import FlowObjects

if TYPE_CHECKING:
    pass

log = logging.getLogger("dagyo.scheduler")

# The executor named by failure reports the scheduler decides itself (deadline, cancel…).
SCHEDULER_EXECUTOR = "scheduler"
# A flow whose queues' deletes got no answer this long has them sent again: a delete the
# broker refused closes its channel, and the deletes behind it on that channel are lost.
DELETE_RETRY_S = 5.0
# How long an ending flow waits for the final counts of its stopped jobs, so its record adds
# up (docs/observability.md): a job stops at its next send or receive, and says so at once.
FINAL_COUNTS_WAIT_S = 5.0


class Ending:
    """Ends flows for the lifecycle.

    Args:
        parts: the flows, their store, the broker, the metrics and the watchers.
        freed: called once a flow's end freed its job slots (admission looks again).
    """

    def __init__(
        self,
        parts: FlowParts,
        *,
        freed: Callable[[], None],
        objects: FlowObjects | None = None,
    ) -> None:
        self._objects = objects
        self._table = parts.table
        self._store = parts.store
        self._broker = parts.broker
        self._metrics = parts.metrics
        self._watchers = parts.watchers
        self._freed = freed
        # Called once as a flow begins to end, with its id and whether it succeeded (the
        # cache keeps or drops its recordings); outside the table's lock.
        self.on_end: Callable[..., None] = lambda flow_id, *, succeeded: None

    # Whether this scheduler owns a flow's shard now (set with the lifecycle's ``owns``).
    owns: Callable[[str], bool] = staticmethod(lambda flow_id: True)  # type: ignore[assignment]

    def fail(
        self,
        flow_id: str,
        kind: int,
        error: str,
        *,
        node: pb.NodeProgress | None = None,
    ) -> None:
        """End a flow for a reason the scheduler found itself (not a failure report)."""
        report = FailureReport(
            flow_id=flow_id,
            executor=SCHEDULER_EXECUTOR,
            error=error,
            kind=kind,  # type: ignore[arg-type]
            time=time.time(),
        )
        if node is not None:
            report.node, report.progdef, report.executor = node.node, node.progdef, node.executor
        state = FlowState.CANCELLED if kind == FAILURE_KIND_CANCELLED else FlowState.FAILED
        self.finish(flow_id, state, report)

    def finish(
        self,
        flow_id: str,
        state: FlowState,
        failure: FailureReport | None = None,
        *,
        record: bool = True,
        announce: bool | None = None,
    ) -> None:
        """Begin ending a flow: note why, then clean up on the broker's I/O thread.

        Args:
            record: False when ``failure`` came off the failure queue (already recorded
                and already published).
            announce: whether the scheduler publishes ``failure`` (default: ``record``);
                False for one an executor published itself.
        """
        with self._table.lock:
            flow = self._table.flows.get(flow_id)
            if flow is None or flow.runtime.finishing:
                return
            flow.runtime.finishing = state.proto
            if failure is not None:
                flow.record.failure.CopyFrom(bounded_failure(failure))
                failed_node = flow.node(failure.node)
                if failed_node is not None and state == FlowState.FAILED:
                    failed_node.state = NODE_FAILED
                flow.runtime.announce = record if announce is None else announce
                if record:
                    self._store.add_failure(failure)
            self._store.save(flow.record, flow.runtime)
        self.on_end(flow_id, succeeded=state == FlowState.SUCCEEDED)
        # Only once its end is stored (and no lease refused it: then the flow's new owner
        # ends it): a flow's queues are never deleted while the store says it runs.
        self._store.when_written(lambda: self._broker.submit(partial(self.clean_up, flow)))

    def clean_up(self, flow: ActiveFlow) -> None:
        """Stop the flow's jobs and delete its queues, then record its end (I/O thread)."""
        with self._table.lock:
            if self._table.flows.get(flow.id) is not flow:
                return  # cleaned up already (a resume asked again), or owned elsewhere now
        if not self.owns(flow.id):
            return  # its shard was lost: its new owner ends it
        state = FlowState.from_proto(flow.runtime.finishing)
        failure = flow.record.failure
        try:
            if state != FlowState.SUCCEEDED:
                self._broker.publish_stop(Stop(flow_id=flow.id, reason=failure.error))
                if flow.runtime.announce:
                    self._broker.publish_failure(failure)
            self._delete(flow, state)
        except BrokerError as e:
            # Left as "finishing" in the store: the next resume cleans up again.
            log.warning("flow %s: clean-up waits for the broker: %s", flow.id, e)

    def _delete(self, flow: ActiveFlow, state: FlowState) -> None:
        # Not waiting on the broker's answers: the I/O thread goes on with other flows,
        # and the end is recorded once every queue is gone.
        flow.deleting_since = time.monotonic()
        self._broker.delete_queues_then(flow.runtime.queues, partial(self._ended, flow, state))

    def counted(self, flow: ActiveFlow) -> None:
        """A job of an ending flow sent its final counts: record the end if it waited only
        for those (holding the table's lock)."""
        if flow.counts_due and not awaited_counts(flow):
            self._record_end(flow)

    def retry_deletes(self) -> None:
        """Send again the deletes of flows whose deletes got no answer for DELETE_RETRY_S;
        record the end of flows that waited FINAL_COUNTS_WAIT_S for final counts."""
        now = time.monotonic()
        with self._table.lock:
            for flow in [f for f in self._table.flows.values() if 0 < f.counts_due <= now]:
                log.warning(
                    "flow %s: no final counts from %s: its record keeps their last heartbeat's",
                    flow.id,
                    ", ".join(awaited_counts(flow)),
                )
                self._record_end(flow)
            stuck = [
                flow
                for flow in self._table.flows.values()
                if flow.deleting_since and now - flow.deleting_since >= DELETE_RETRY_S
            ]
            for flow in stuck:
                flow.deleting_since = now
        for flow in stuck:
            log.warning("flow %s: its queues' deletes got no answer; sending them again", flow.id)
            state = FlowState.from_proto(flow.runtime.finishing)
            self._broker.submit(partial(self._delete_again, flow, state))

    def _delete_again(self, flow: ActiveFlow, state: FlowState) -> None:
        with self._table.lock:
            if self._table.flows.get(flow.id) is not flow:
                return  # its end came meanwhile
        try:
            self._delete(flow, state)
        except BrokerError as e:
            log.warning("flow %s: clean-up waits for the broker: %s", flow.id, e)

    def _ended(self, flow: ActiveFlow, state: FlowState) -> None:
        """Every queue of the flow is gone: record its end once its jobs' final counts came."""
        with self._table.lock:
            if self._table.flows.get(flow.id) is not flow or flow.counts_due:
                return
            if awaited_counts(flow):
                flow.counts_due = time.monotonic() + FINAL_COUNTS_WAIT_S
                return
            self._record_end(flow)

    def _record_end(self, flow: ActiveFlow) -> None:
        """Record a flow's end and tell its watchers (holding the table's lock)."""
        state = FlowState.from_proto(flow.runtime.finishing)
        flow.record.state = state.proto
        flow.record.ended = time.time()
        flow.record.waiting = ""
        if state != FlowState.SUCCEEDED:  # its jobs were told to stop
            for node in flow.record.nodes:
                if node.state in (NODE_PENDING, NODE_RUNNING):
                    node.state = NODE_STOPPED
        self._store.save(flow.record, flow.runtime)
        del self._table.flows[flow.id]
        if self._objects is not None:  # its jobs are gone: what they offloaded goes too
            self._objects.delete(flow.id)
        self._watchers.end(flow.id, flow.record)
        self._freed()  # its slots are free
        self._metrics.flow_ended(state.value, flow.record.ended - flow.record.created)
        flow.ended.set()
