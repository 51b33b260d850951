"""Watchers of flows: each gets the flow's progress, every export in order, then its end.

A subscription is a queue filled by the lifecycle (under its lock, so the exports kept
before the subscription and those streamed after it neither overlap nor leave a gap) and
drained by one gRPC ``Watch`` call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence

from executor.pb.dagyo.v1 import scheduler_pb2 as pb


def _bare(record: pb.FlowRecord) -> pb.FlowRecord:
    bare = pb.FlowRecord()
    bare.CopyFrom(record)
    del bare.exports[:]
    return bare


class Watchers:
    """The live subscriptions of every flow."""

    class Subscription:
        """The events of one watcher, ending with the flow's ``end`` record."""

        def __init__(self, owner: Watchers | None, flow_id: str) -> None:
            self._owner = owner
            self.flow_id = flow_id
            self.events: queue.SimpleQueue[pb.WatchEvent] = queue.SimpleQueue()

        def next(self, timeout: float) -> pb.WatchEvent | None:
            """The next event, or None when none came within ``timeout`` seconds."""
            try:
                return self.events.get(timeout=timeout)
            except queue.Empty:
                return None

        def close(self) -> None:
            """Stop receiving events (idempotent)."""
            if self._owner is not None:
                self._owner._remove(self)
                self._owner = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_flow: dict[str, list[Watchers.Subscription]] = {}

    def subscribe(
        self, flow_id: str, record: pb.FlowRecord, kept: Sequence[pb.Export]
    ) -> Watchers.Subscription:
        """Follow a running flow: its progress now, the exports kept so far, then live."""
        subscription = Watchers.Subscription(self, flow_id)
        subscription.events.put(pb.WatchEvent(progress=_bare(record)))
        for export in kept:
            subscription.events.put(pb.WatchEvent(export=export))
        with self._lock:
            self._by_flow.setdefault(flow_id, []).append(subscription)
        return subscription

    @staticmethod
    def replay(record: pb.FlowRecord) -> Watchers.Subscription:
        """The events of an ended flow: its record, its kept exports, its end."""
        subscription = Watchers.Subscription(None, record.id)
        subscription.events.put(pb.WatchEvent(progress=_bare(record)))
        for export in record.exports:
            subscription.events.put(pb.WatchEvent(export=export))
        subscription.events.put(pb.WatchEvent(end=_bare(record)))
        return subscription

    def progress(self, flow_id: str, record: pb.FlowRecord) -> None:
        """Tell the flow's watchers its record changed."""
        self._send(flow_id, [pb.WatchEvent(progress=_bare(record))])

    def exports(self, flow_id: str, exports: Iterable[pb.Export]) -> None:
        """Give the flow's watchers newly arrived exports, in order."""
        self._send(flow_id, [pb.WatchEvent(export=e) for e in exports])

    def end(self, flow_id: str, record: pb.FlowRecord) -> None:
        """Give the flow's watchers its end record; their subscriptions end with it."""
        with self._lock:
            subscriptions = self._by_flow.pop(flow_id, [])
        event = pb.WatchEvent(end=_bare(record))
        for subscription in subscriptions:
            subscription.events.put(event)
            subscription._owner = None

    def _send(self, flow_id: str, events: list[pb.WatchEvent]) -> None:
        with self._lock:
            subscriptions = list(self._by_flow.get(flow_id, ()))
        for subscription in subscriptions:
            for event in events:
                subscription.events.put(event)

    def _remove(self, subscription: Watchers.Subscription) -> None:
        with self._lock:
            subscriptions = self._by_flow.get(subscription.flow_id, [])
            if subscription in subscriptions:
                subscriptions.remove(subscription)
            if not subscriptions:
                self._by_flow.pop(subscription.flow_id, None)
