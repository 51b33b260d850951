"""The flows the scheduler follows (those that have not ended), and what is asked of them.

One table, one lock: the lifecycle changes the flows under it, and the admission, the
autoscaler, retirement and metrics count their jobs under it. Broker calls are never
made while holding it (the broker's I/O thread takes it in its callbacks).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from executor.core.constants import mailbox_name
from scheduler.service.flowstate import NODE_PENDING, NODE_RUNNING, ActiveFlow, FlowState

if TYPE_CHECKING:
    from scheduler.service.broker import Broker
    from scheduler.service.metrics import SchedulerMetrics
    from scheduler.service.store import StoreWriter
    from scheduler.service.subscriptions import Watchers


class FlowTable:
    """Flow id -> the flow, for every flow that has not ended; ``lock`` guards both."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.flows: dict[str, ActiveFlow] = {}

    def waiting(self) -> list[ActiveFlow]:
        """The flows waiting for admission, oldest first (under the lock)."""
        flows = [f for f in self.flows.values() if f.runtime.waiting and not f.runtime.finishing]
        return sorted(flows, key=lambda f: f.record.created)

    def running_edges(self) -> dict[str, list[str]]:
        """Flow id -> its edges' targets, for each running flow (the queue sampler's)."""
        with self.lock:
            return {
                f.id: [e.target for e in f.record.edges]
                for f in self.flows.values()
                if f.record.state == FlowState.RUNNING.proto and not f.runtime.finishing
            }

    def slots_used(self) -> Counter[str]:
        """Per mailbox, the jobs of admitted flows that have not ended (under the lock)."""
        used: Counter[str] = Counter()
        for flow in self.flows.values():
            if not flow.runtime.waiting:
                used.update(
                    mailbox_name(n.progdef, n.version)
                    for n in flow.record.nodes
                    if n.state in (NODE_PENDING, NODE_RUNNING)
                )
        return used

    def jobs_running(self) -> int:
        """Jobs that started and have not ended, in flows that have not ended."""
        with self.lock:
            return sum(n.state == NODE_RUNNING for f in self.flows.values() for n in f.record.nodes)

    def jobs_running_of(self, progdef: str, version: str) -> int:
        """Jobs of one progdef version that started and have not ended (the autoscaler's)."""
        with self.lock:
            return sum(
                n.state == NODE_RUNNING and n.progdef == progdef and n.version == version
                for f in self.flows.values()
                for n in f.record.nodes
            )

    def jobs_held_of(self, progdef: str, version: str) -> int:
        """Jobs of one progdef version in flows waiting for admission (not published yet)."""
        with self.lock:
            return sum(
                n.progdef == progdef and n.version == version
                for f in self.flows.values()
                if f.runtime.waiting
                for n in f.record.nodes
            )

    def jobs_open_of(self, progdef: str, version: str) -> int:
        """Jobs of one progdef version not ended yet, started or not (retirement waits)."""
        with self.lock:
            return sum(
                n.state in (NODE_PENDING, NODE_RUNNING)
                and n.progdef == progdef
                and n.version == version
                for f in self.flows.values()
                for n in f.record.nodes
            )


def needs(flow: ActiveFlow) -> Counter[str]:
    """The job slots a flow needs: mailbox -> its jobs there."""
    return Counter(mailbox_name(n.progdef, n.version) for n in flow.record.nodes)


@dataclass(frozen=True)
class FlowParts:
    """What every part of a flow's life works on, built once by the lifecycle and handed to
    its ending, its queues and its admission.

    Attributes:
        table: the flows not ended, under one lock.
        store: where records, runtimes, exports and failures are kept.
        broker: the scheduler's AMQP side.
        metrics: the scheduler's Prometheus metrics.
        watchers: who follows each flow.
    """

    table: FlowTable
    store: StoreWriter
    broker: Broker
    metrics: SchedulerMetrics
    watchers: Watchers
