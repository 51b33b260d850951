"""The store as the scheduler uses it: flow writes made on a thread of their own.

The broker's I/O thread changes records on every event, heartbeat and export frame; it
hands each write to :class:`StoreWriter` (a copy of what it saves) and goes on, and the
writer thread stores them one by one in the order they came, so a flow's writes keep their
order. A message whose handling wrote something is acked only once the write is stored
(:meth:`StoreWriter.when_written`), so a scheduler killed meanwhile gets it again.
A read first waits for the writes queued before it (a caller reads what it wrote); a new
flow is stored at once (its Submit answers only once it is recorded). ``close`` stores
what is queued, then closes the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.errors import LeaseLost, StoreUnavailable
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime, FlowState
from scheduler.service.store.base import (
    DEFAULT_LIST_LIMIT,
    CachedResults,
    CancelRequests,
    Fence,
    FlowLeases,
    Members,
    Store,
    TriggerFirings,
)

log = logging.getLogger("dagyo.scheduler.store")

# A write the database refused for want of a connection is tried again this often...
RETRY_S = 1.0
# ...and, once the scheduler stops, for this long at most before it is given up.
CLOSE_FLUSH_S = 10.0
# A read waits this long at most for the writes queued before it.
READ_WAIT_S = 60.0


class StoreWriter:
    """A :class:`~scheduler.service.store.base.Store` whose flow writes (``save``,
    ``add_failure``) are queued for a writer thread; every other call goes to the store.

    Args:
        store: where the writes go; closed by :meth:`close`.
        fence_of: the fence of a flow's writes (its shard's lease, see
            scheduler.service.shards), or None when this scheduler does not own the flow:
            its writes are then refused as LeaseLost. None: writes are not fenced.
        lease_lost: called (on the writer thread) with the flow id of each write a lease
            refused (LeaseLost).

    A message whose writes met LeaseLost is never acked (``when_written`` does not call
    back): it stays with the broker, for the flow's owner, once the channel is reset.
    """

    def __init__(
        self,
        store: Store,
        *,
        fence_of: Callable[[str], Fence | None] | None = None,
        lease_lost: Callable[[str], None] = lambda flow_id: None,
    ) -> None:
        self.store = store
        self._fence_of = fence_of
        self._lease_lost = lease_lost
        self._refused: deque[int] = deque(maxlen=1024)  # numbers of writes refused
        self._changed = threading.Condition()
        self._queue: deque[tuple[Callable[[], None], str]] = deque()
        self._queued = 0  # writes ever queued
        self._written = 0  # writes done (stored, or given up)
        self._waiting: deque[tuple[int, int, Callable[[], None]]] = deque()
        self._closing = 0.0  # monotonic time close() began
        self._thread = threading.Thread(target=self._run, name="dagyo-store-writer", daemon=True)
        self._thread.start()

    # --- queued writes ---------------------------------------------------------------------

    def save(
        self,
        record: pb.FlowRecord,
        runtime: FlowRuntime | None = None,
        exports: Sequence[pb.Export] = (),
        *,
        fence: Fence | None = None,
    ) -> None:
        """Queue a save (see base.FlowRecords.save) of copies of record and runtime; a
        fenced one refused (LeaseLost) is logged and dropped."""
        if self._fence_of is not None and fence is None:
            fence = self._fence_of(record.id)
            if fence is None:
                self._put(partial(_not_owned, record.id), record.id)
                return
        saved = pb.FlowRecord()
        saved.CopyFrom(record)
        state = None if runtime is None else FlowRuntime.from_json(runtime.to_json())
        kept = list(exports)
        self._put(lambda: self.store.save(saved, state, kept, fence=fence), record.id)

    def add_failure(self, report: FailureReport, *, fence: Fence | None = None) -> None:
        """Queue a failure report (fenced as :meth:`save`)."""
        if self._fence_of is not None and fence is None:
            fence = self._fence_of(report.flow_id)
            if fence is None:
                self._put(partial(_not_owned, report.flow_id), report.flow_id)
                return
        saved = FailureReport()
        saved.CopyFrom(report)
        self._put(lambda: self.store.add_failure(saved, fence=fence), report.flow_id)

    def when_written(self, then: Callable[[], None]) -> None:
        """Call ``then`` once every write queued so far is stored: now when none waits,
        else on the writer thread."""
        with self._changed:
            if self._written < self._queued:
                self._waiting.append((self._written + 1, self._queued, then))
                return
        then()

    def flush(self, timeout_s: float = READ_WAIT_S) -> bool:
        """Wait until every write queued so far is done; False when ``timeout_s`` passed."""
        with self._changed:
            target = self._queued
            return self._changed.wait_for(lambda: self._written >= target, timeout_s)

    def close(self) -> None:
        """Store what is queued (giving up after CLOSE_FLUSH_S without a database), then
        close the store (idempotent)."""
        with self._changed:
            self._closing = self._closing or time.monotonic()
            self._changed.notify_all()
        self._thread.join()
        self.store.close()

    def _put(self, write: Callable[[], None], flow_id: str) -> None:
        with self._changed:
            if not self._closing:
                self._queue.append((write, flow_id))
                self._queued += 1
                self._changed.notify_all()
                return
        write()  # the writer has stopped: this late write is made here, or raises

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                write, flow_id = self._queue.popleft()
            refused = self._write(write, flow_id)
            due: list[Callable[[], None]] = []
            with self._changed:
                self._written += 1
                if refused:
                    self._refused.append(self._written)
                while self._waiting and self._waiting[0][1] <= self._written:
                    low, high, then = self._waiting.popleft()
                    if not any(low <= number <= high for number in self._refused):
                        due.append(then)
                self._changed.notify_all()
            for then in due:
                try:
                    then()
                except Exception:
                    log.exception("after a write to the scheduler's state")

    def _write(self, write: Callable[[], None], flow_id: str) -> bool:
        """Make one write; True when a lease refused it."""
        warned = False
        while True:
            try:
                write()
                if warned:
                    log.warning("the scheduler's state answers again")
                return False
            except StoreUnavailable as e:
                closing = self._closing
                if closing and time.monotonic() - closing > CLOSE_FLUSH_S:
                    log.error("a write to the scheduler's state is lost at stop: %s", e)
                    return False
                if not warned:
                    log.warning("writes to the scheduler's state wait: %s", e)
                    warned = True
                time.sleep(RETRY_S)
            except LeaseLost as e:  # another scheduler owns the flow now: its record stands
                log.warning("%s", e)
                try:
                    self._lease_lost(flow_id)
                except Exception:
                    log.exception("after a refused write")
                return True
            except Exception:
                log.exception("a write to the scheduler's state failed; it is lost")
                return False

    # --- the rest of the store: reads wait for the writes before them ----------------------

    def create(self, record: pb.FlowRecord, runtime: FlowRuntime) -> None:
        """Store a new flow now."""
        self.store.create(record, runtime)

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        """See base.FlowRecords.get."""
        self.flush()
        return self.store.get(flow_id, with_exports=with_exports)

    def exports(self, flow_id: str) -> list[pb.Export]:
        """See base.FlowRecords.exports."""
        self.flush()
        return self.store.exports(flow_id)

    def recent(
        self, limit: int = DEFAULT_LIST_LIMIT, *, tenant: str | None = None, token: str = ""
    ) -> tuple[list[pb.FlowRecord], str]:
        """See base.FlowRecords.recent."""
        self.flush()
        return self.store.recent(limit, tenant=tenant, token=token)

    def running_count(self, tenant: str) -> int:
        """See base.FlowRecords.running_count."""
        self.flush()
        return self.store.running_count(tenant)

    def count_by_state(self) -> dict[FlowState, int]:
        """See base.FlowRecords.count_by_state."""
        self.flush()
        return self.store.count_by_state()

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        """See base.FlowRuntimes.runtime."""
        self.flush()
        return self.store.runtime(flow_id)

    def active(self) -> list[tuple[pb.FlowRecord, FlowRuntime]]:
        """See base.FlowRuntimes.active."""
        self.flush()
        return self.store.active()

    def failures(
        self,
        flow_id: str = "",
        *,
        tenant: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        token: str = "",
    ) -> tuple[list[FailureReport], str]:
        """See base.FailureRecords.failures."""
        self.flush()
        return self.store.failures(flow_id, tenant=tenant, limit=limit, token=token)

    def spares(self, owners: Sequence[str] | None = None) -> list[tuple[str, list[str], bool]]:
        """See base.SpareRecords.spares (which flows took them: after the queued writes)."""
        self.flush()
        return self.store.spares(owners)

    # --- what the writer does not hold: straight to the store ------------------------------

    def add_spare(self, flow_id: str, queues: Sequence[str], *, owner: str = "") -> None:
        """See base.SpareRecords.add_spare (stored before the queues are declared)."""
        self.store.add_spare(flow_id, queues, owner=owner)

    def remove_spares(self, flow_ids: Sequence[str]) -> None:
        """See base.SpareRecords.remove_spares."""
        self.store.remove_spares(flow_ids)

    def save_version(self, mailbox: str, *, progdef: str, version: str, state: str) -> None:
        """See base.VersionRecords.save_version."""
        self.store.save_version(mailbox, progdef=progdef, version=version, state=state)

    def versions(self) -> list[tuple[str, str, str, str]]:
        """See base.VersionRecords.versions."""
        return self.store.versions()

    @property
    def firings(self) -> TriggerFirings:
        """See base.Store.firings (written at once: an event's firing before its answer)."""
        return self.store.firings

    @property
    def leases(self) -> FlowLeases:
        """See base.Store.leases (at once: a lease is taken before the flow is written)."""
        return self.store.leases

    @property
    def cache(self) -> CachedResults:
        """See base.Store.cache (at once: an entry is kept before its flow's end is told)."""
        return self.store.cache

    @property
    def members(self) -> Members:
        """See base.Store.members (at once)."""
        return self.store.members

    @property
    def cancels(self) -> CancelRequests:
        """See base.Store.cancels (at once)."""
        return self.store.cancels


def _not_owned(flow_id: str) -> None:
    raise LeaseLost(f"flow {flow_id}: a write was refused: this scheduler does not own its shard")
