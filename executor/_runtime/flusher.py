"""The Flusher: one thread per process that sends the frames whose first item has lingered.

A FrameWriter flushes a full frame itself; a frame that is not full waits at most its
linger (FRAME_LINGER_S), whatever its job is doing, because this thread flushes it. The
thread serves every job of the process, so nothing one job meets (its stream gone with a
cancelled flow, the broker lost) may end it: a flush that fails is that job's to hear.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from executor.core.constants import FRAME_LINGER_S

log = logging.getLogger("dagyo.stream")


class FrameWriter(Protocol):
    """What the Flusher needs of a writer (executor._runtime.stream.FrameWriter)."""

    typename: str
    closed: bool
    failed: Exception | None

    @property
    def holds_items(self) -> bool:
        """True while items wait in the frame being filled."""
        ...

    def flush_if_lingering(self, now: float) -> bool:
        """Flush a frame that lingered; True when nothing lingers any more."""
        ...


class Flusher:
    """One thread per process that flushes frames whose first item has lingered.

    Only writers holding items are watched, so idle jobs cost nothing.
    """

    def __init__(self, *, linger_s: float = FRAME_LINGER_S) -> None:
        self._linger_s = linger_s
        self._pending: dict[int, FrameWriter] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="dagyo-flusher", daemon=True)
        self._thread.start()

    def watch(self, writer: FrameWriter) -> None:
        """Flush this writer once its frame lingers (called when it gets a first item)."""
        with self._lock:
            if not self._pending:
                self._wake.set()
            self._pending[id(writer)] = writer

    def close(self) -> None:
        """End the thread (writers still watched are left to their own closing flush)."""
        self._closed = True
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._closed:
            if not self._wake.wait(1.0):
                continue
            time.sleep(self._linger_s)
            now = time.monotonic()
            with self._lock:
                writers = list(self._pending.values())
            done = [writer for writer in writers if self._flush(writer, now)]
            with self._lock:
                for writer in done:
                    if not writer.holds_items or writer.closed or writer.failed is not None:
                        self._pending.pop(id(writer), None)
                if not self._pending and not self._closed:
                    self._wake.clear()

    @staticmethod
    def _flush(writer: FrameWriter, now: float) -> bool:
        """Flush one writer's lingering frame; its failure is its job's, never this thread's.

        A flush that fails (its stream gone with its flow, the broker lost) leaves the
        error with the writer, which raises it to its job at the next add or close (a
        stream gone has set the job's stop already); the writer is then forgotten here.
        """
        try:
            return writer.flush_if_lingering(now)
        except Exception as e:
            writer.failed = e
            log.info("a lingering frame of %s was not sent: %s", writer.typename, e)
            return True
