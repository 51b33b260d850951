"""Calls about a flow another scheduler owns (docs/scaling.md, Several schedulers).

Any scheduler answers any call: ``Get``, ``List`` and ``Failures`` read the shared store,
which the owner keeps current. These are the two that need more:

* a *cancel* is asked of the owner through the store (a row it carries out on its tick,
  kept across a takeover until done), and answers once the flow is ending;
* a *watch* follows the flow's record and exports in the store (:class:`StoreWatch`),
  polled every STORE_WATCH_POLL_S, until the flow ends.
"""

from __future__ import annotations

import time

from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_CANCELLED
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowState
from scheduler.service.store import StoreWriter
from scheduler.service.subscriptions import Watchers

# How often a cancel asked of another scheduler looks whether the flow is ending.
CANCEL_POLL_S = 0.2
# How often a watch of a flow owned elsewhere reads its record and exports.
STORE_WATCH_POLL_S = 0.3


def active(record: pb.FlowRecord | None) -> bool:
    """True for the record of a flow that has not ended."""
    return record is not None and FlowState.from_proto(record.state).active


def cancel_elsewhere(store: StoreWriter, flow_id: str, *, wait_s: float) -> pb.FlowRecord | None:
    """Cancel a flow this scheduler does not own: ask its owner, and wait (up to
    ``wait_s``) until it is ending. The record afterwards, or None when unknown."""
    if not active(store.get(flow_id, with_exports=False)):
        return store.get(flow_id)
    store.cancels.request_cancel(flow_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        record = store.get(flow_id, with_exports=False)
        if not active(record):
            break
        assert record is not None
        if record.HasField("failure") and record.failure.kind == FAILURE_KIND_CANCELLED:
            break  # ending: its owner cleans it up
        time.sleep(CANCEL_POLL_S)
    return store.get(flow_id)


class StoreWatch(Watchers.Subscription):
    """The events of a flow another scheduler owns, read from the store: its record when
    it changed, its exports as they are kept, then its end."""

    def __init__(self, store: StoreWriter, record: pb.FlowRecord) -> None:
        super().__init__(None, record.id)
        self._store = store
        self._seen = b""
        self._exports = 0
        self._ended = False
        self._look(record)

    def _look(self, record: pb.FlowRecord) -> None:
        exports = list(record.exports)
        del record.exports[:]
        record.ClearField("flow_json")
        for export in exports[self._exports :]:
            self.put(pb.WatchEvent(export=export), bounded=False)
        self._exports = max(self._exports, len(exports))
        if not active(record):
            self._ended = True
            self.put(pb.WatchEvent(end=record), bounded=False)
            return
        blob = record.SerializeToString()
        if blob != self._seen:
            self._seen = blob
            self.put(pb.WatchEvent(progress=record), bounded=False)

    def next(self, timeout: float) -> pb.WatchEvent | None:
        """The next event, reading the store when none is queued."""
        event = super().next(0)
        if event is not None or self._ended:
            return event
        time.sleep(min(timeout, STORE_WATCH_POLL_S))
        record = self._store.get(self.flow_id)
        if record is None:  # gone: say it ended as last seen
            self._ended = True
            return None
        self._look(record)
        return super().next(0)
