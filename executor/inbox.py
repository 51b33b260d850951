"""The inbox of one job: the frames that arrived for its input ports, waiting to be read.

Transports put frames in; the job's input streams take them out. It lives apart from
:mod:`executor.stream` (frames going out) so that transports depend on it and not the
other way round.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from executor.constants import IDLE_WAIT_S, STOP_POLL_S
from executor.errors import Stopped


class Inbox:
    """The frames that arrived for one job's input ports, per port, in arrival order.

    One condition covers all ports so a job can wait for whichever input has a frame
    first (:meth:`take_any`) without a thread per input.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._cond = threading.Condition()
        self._frames: dict[str, deque[tuple[bytes, Callable[[], None] | None]]] = {}
        self._closed: set[str] = set()
        # Called (in the job's thread) when the job is about to wait for input.
        self.on_idle: Callable[[], None] | None = None

    def add_port(self, port: str) -> None:
        """Make room for a port's frames."""
        with self._cond:
            self._frames.setdefault(port, deque())

    def depth(self, port: str) -> int:
        """Return how many frames wait for the job on this port."""
        with self._cond:
            return len(self._frames[port])

    def put(self, port: str, frame: bytes, on_taken: Callable[[], None] | None = None) -> None:
        """Add a frame without waiting (the transport bounds how many arrive).

        Args:
            on_taken: called once the job has taken the frame (e.g. to ack it).
        """
        with self._cond:
            if port in self._closed:
                return
            self._frames[port].append((frame, on_taken))
            self._cond.notify_all()

    def has_room(self, port: str, capacity: int) -> bool:
        """Return True when the port holds fewer than ``capacity`` frames."""
        with self._cond:
            return port in self._closed or len(self._frames[port]) < capacity

    def put_wait(self, port: str, frame: bytes, capacity: int, stop: threading.Event) -> None:
        """Add a frame, waiting while the port already holds ``capacity`` frames.

        Raises:
            Stopped: when ``stop`` (the producer's signal) is set while waiting.
        """
        with self._cond:
            while len(self._frames[port]) >= capacity and port not in self._closed:
                if stop.is_set():
                    raise Stopped("the flow was stopped")
                self._cond.wait(STOP_POLL_S)
            if port not in self._closed:
                self._frames[port].append((frame, None))
                self._cond.notify_all()

    def take(self, port: str) -> bytes:
        """Return the next frame of a port, waiting for it.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        return self.take_any((port,))[1]

    def take_any(self, ports: Iterable[str]) -> tuple[str, bytes]:
        """Return (port, frame) for the first of ``ports`` that has a frame, waiting.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        ports = tuple(ports)
        idle = self.on_idle
        while True:
            with self._cond:
                found = self._take_locked(ports, wait=idle is None)
            if found is not None:
                break
            # Nothing to read: send what the job's outputs hold now, before waiting, so a
            # trickle of items is not held back by the linger.
            assert idle is not None
            idle()
            idle = None
        port, frame, on_taken = found
        if on_taken is not None:
            on_taken()
        return port, frame

    def _take_locked(
        self, ports: tuple[str, ...], *, wait: bool
    ) -> tuple[str, bytes, Callable[[], None] | None] | None:
        while True:
            if self._stop.is_set():
                raise Stopped("the flow was stopped")
            for port in ports:
                frames = self._frames[port]
                if frames:
                    frame, on_taken = frames.popleft()
                    self._cond.notify_all()
                    return port, frame, on_taken
            if not wait:
                return None
            self._cond.wait(IDLE_WAIT_S)  # a stop wakes it: see wake

    def close_port(self, port: str) -> None:
        """Drop a port's frames from now on: its job no longer reads it."""
        with self._cond:
            self._closed.add(port)
            self._frames[port].clear()
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiter so it looks at its stop signal now."""
        with self._cond:
            self._cond.notify_all()
