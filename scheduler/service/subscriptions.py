"""Watchers of flows: each gets the flow's progress, every export in order, then its end.

A subscription is a queue filled by the lifecycle (under its lock, so the exports kept
before the subscription and those streamed after it neither overlap nor leave a gap) and
drained by one gRPC ``Watch`` call. A watcher that does not read is not buffered for
without limit: past ``limit`` queued live events its subscription is dropped (its buffer
freed) and the ``Watch`` call ends with RESOURCE_EXHAUSTED, saying so.

:class:`StreamSlots` caps the open ``Watch`` calls, of one client and in all, so streams
cannot take every gRPC worker thread from unary calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from executor.core.errors import LimitReached, Unavailable
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

# How often a watch looks whether its caller or the scheduler went away.
WATCH_POLL_S = 0.5


def _bare(record: pb.FlowRecord) -> pb.FlowRecord:
    bare = pb.FlowRecord()
    bare.CopyFrom(record)
    del bare.exports[:]
    bare.ClearField("flow_json")  # as large as a message may be; Get has it
    return bare


class Watchers:
    """The live subscriptions of every flow."""

    class Subscription:
        """The events of one watcher, ending with the flow's ``end`` record.

        Attributes:
            overflowed: True once the watcher fell more than ``limit`` events behind and
                was dropped; it gets no more events.
        """

        def __init__(self, owner: Watchers | None, flow_id: str, limit: int = 0) -> None:
            self._owner = owner
            self.flow_id = flow_id
            self.limit = limit
            self.overflowed = False
            self._events: deque[pb.WatchEvent] = deque()
            self._ready = threading.Condition()

        def put(self, event: pb.WatchEvent, *, bounded: bool = True) -> None:
            """Queue an event; a live one past ``limit`` queued drops the watcher."""
            with self._ready:
                if self.overflowed:
                    return
                events = self._events
                if event.HasField("progress") and events and events[-1].HasField("progress"):
                    events[-1] = event  # the newer record says all the older one did
                elif bounded and self.limit and len(events) >= self.limit:
                    self.overflowed = True
                    events.clear()
                else:
                    events.append(event)
                self._ready.notify()
            if self.overflowed:
                self.close()

        def next(self, timeout: float) -> pb.WatchEvent | None:
            """The next event, or None when none came within ``timeout`` seconds (or the
            watcher was dropped)."""
            with self._ready:
                if not self._events and not self.overflowed:
                    self._ready.wait(timeout)
                return self._events.popleft() if self._events else None

        def close(self) -> None:
            """Stop receiving events (idempotent)."""
            owner, self._owner = self._owner, None
            if owner is not None:
                owner._remove(self)

    def __init__(self, limit: int = 0) -> None:
        """Args: limit: live events queued for one watcher before it is dropped; 0 none."""
        self._lock = threading.Lock()
        self._limit = limit
        self._by_flow: dict[str, list[Watchers.Subscription]] = {}

    def subscribe(
        self, flow_id: str, record: pb.FlowRecord, kept: Sequence[pb.Export]
    ) -> Watchers.Subscription:
        """Follow a running flow: its progress now, the exports kept so far, then live."""
        subscription = Watchers.Subscription(self, flow_id, self._limit)
        # The kept exports are bounded by the record's cap: they never drop a watcher.
        subscription.put(pb.WatchEvent(progress=_bare(record)), bounded=False)
        for export in kept:
            subscription.put(pb.WatchEvent(export=export), bounded=False)
        with self._lock:
            self._by_flow.setdefault(flow_id, []).append(subscription)
        return subscription

    @staticmethod
    def replay(record: pb.FlowRecord) -> Watchers.Subscription:
        """The events of an ended flow: its record, its kept exports, its end."""
        subscription = Watchers.Subscription(None, record.id)
        subscription.put(pb.WatchEvent(progress=_bare(record)), bounded=False)
        for export in record.exports:
            subscription.put(pb.WatchEvent(export=export), bounded=False)
        subscription.put(pb.WatchEvent(end=_bare(record)), bounded=False)
        return subscription

    def progress(self, flow_id: str, record: pb.FlowRecord) -> None:
        """Tell the flow's watchers its record changed (nothing to copy when it has none)."""
        if flow_id in self._by_flow:  # a racy look is enough: subscribe sends the record
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
            subscription._owner = None
            subscription.put(event, bounded=False)

    def _send(self, flow_id: str, events: list[pb.WatchEvent]) -> None:
        with self._lock:
            subscriptions = list(self._by_flow.get(flow_id, ()))
        for subscription in subscriptions:
            for event in events:
                subscription.put(event)

    def _remove(self, subscription: Watchers.Subscription) -> None:
        with self._lock:
            subscriptions = self._by_flow.get(subscription.flow_id, [])
            if subscription in subscriptions:
                subscriptions.remove(subscription)
            if not subscriptions:
                self._by_flow.pop(subscription.flow_id, None)


def follow(
    subscription: Watchers.Subscription,
    flow_id: str,
    *,
    active: Callable[[], bool],
    stopping: threading.Event,
) -> Iterator[pb.WatchEvent]:
    """A subscription's events until the flow's end (closing it after).

    Args:
        active: False once the watcher went away (the events then stop).
        stopping: set once the scheduler stops.

    Raises:
        Unavailable: the scheduler is stopping.
        LimitReached: the watcher fell more than the subscription's limit behind.
    """
    try:
        while active():
            if stopping.is_set():
                raise Unavailable("the scheduler is stopping")
            event = subscription.next(WATCH_POLL_S)
            if subscription.overflowed:
                raise LimitReached(
                    f"this watch of flow {flow_id} fell more than {subscription.limit} "
                    "events behind and was dropped (DAGYO_WATCHER_EVENTS); watch again to "
                    "get the kept exports and the end"
                )
            if event is None:
                continue
            yield event
            if event.HasField("end"):
                return
    finally:
        subscription.close()


class StreamSlots:
    """Counts open streams, of each client and in all, refusing one past either cap.

    Args:
        per_client: streams one client (a gRPC peer: one connection) may hold open.
        total: streams all clients together may hold open.
    """

    def __init__(self, *, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, client: str) -> str | None:
        """Open a stream for ``client``; else the sentence saying which cap refused it."""
        with self._lock:
            mine = self._open.get(client, 0)
            if mine >= self.per_client:
                return (
                    f"this client already has {mine} Watch streams open, the most one client "
                    "may (DAGYO_WATCHES_PER_CLIENT): close some first"
                )
            if sum(self._open.values()) >= self.total:
                return (
                    f"the scheduler already serves {self.total} Watch streams, the most it "
                    "keeps open (DAGYO_GRPC_WORKERS): try again later"
                )
            self._open[client] = mine + 1
            return None

    def give_back(self, client: str) -> None:
        """Close a stream ``take`` opened."""
        with self._lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)
