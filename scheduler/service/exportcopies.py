"""Export frames holding offloaded items, read off the broker's I/O thread.

Keeping an offloaded exported item copies its object in the store (a hard link in a folder,
a server-side copy on S3: seconds for a large object), which must not hold the broker's
I/O thread (its heartbeats, every other flow's messages). A frame holding a reference is
therefore read on a thread of its own, and so is every later export frame of the same flow
until none waits there, so a flow's frames are still read in the order they arrived. Its
message is acked once it is read and stored, as any export frame.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from scheduler.service.consumers import AckLater

log = logging.getLogger("dagyo.scheduler.exports")


class Deferred:
    """The AckLater of a frame read on the copies thread: calls what the I/O thread gives
    it once the frame is read and what it changed is stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._then: Callable[[], None] | None = None
        self._done = False
        self._later: AckLater | None = None

    def __call__(self, then: Callable[[], None]) -> None:
        with self._lock:
            if not self._done:
                self._then = then
                return
        self._ack(self._later, then)

    def done(self, later: AckLater | None) -> None:
        """The frame was read; ``later`` says when it is stored (None: now)."""
        with self._lock:
            self._done, self._later, then = True, later, self._then
        if then is not None:
            self._ack(later, then)

    @staticmethod
    def _ack(later: AckLater | None, then: Callable[[], None]) -> None:
        if later is None:
            then()
        else:
            later(then)


class ExportCopies:
    """One thread that reads, in order, the export frames handed to it.

    Attributes:
        waiting: flow id -> frames of it handed over and not yet read (guarded by the
            caller's lock: the flow table's).
    """

    def __init__(self) -> None:
        self.waiting: dict[str, int] = {}
        self._todo: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def hand_over(self, flow_id: str, read: Callable[[], AckLater | None]) -> Deferred:
        """Read a frame of ``flow_id`` on the copies thread (call holding the table's lock,
        which ``read`` takes itself); its ack waits for it."""
        self.waiting[flow_id] = self.waiting.get(flow_id, 0) + 1
        deferred = Deferred()

        def task() -> None:
            later: AckLater | None = None
            try:
                later = read()
            except Exception:
                log.exception("an export frame of flow %s could not be handled; dropped", flow_id)
            finally:
                deferred.done(later)

        self._todo.put(task)
        self._start()
        return deferred

    def read(self, flow_id: str) -> None:
        """A frame of ``flow_id`` handed over was read (call holding the table's lock)."""
        left = self.waiting.get(flow_id, 1) - 1
        if left:
            self.waiting[flow_id] = left
        else:
            self.waiting.pop(flow_id, None)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="dagyo-export-copies", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._todo.get()()
