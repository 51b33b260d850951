"""The inbox of one job: the frames that arrived for its input ports, waiting to be read.

Transports put frames in; the job's input streams take them out. It lives apart from
:mod:`executor._runtime.stream` (frames going out) so that transports depend on it and not the
other way round.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from executor.core.constants import IDLE_WAIT_S
from executor.core.errors import Stopped
from executor.core.frames import StreamFrame


class StopSignal(threading.Event):
    """A job's stop signal: setting it also wakes the job wherever it waits on its inbox.

    Whoever stops a job (its flow's Stop, a drain, a transport finding a stream gone, on
    any thread) wakes it so, and an idle job never needs to wake on its own to look.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        if self._wake is not None:
            self._wake()


class Inbox:
    """The frames that arrived for one job's input ports, per port, in arrival order.

    One condition covers all ports so a job can wait for whichever input has a frame
    first (:meth:`take_any`) without a thread per input.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._cond = threading.Condition()
        if isinstance(stop, StopSignal):
            stop._wake = self.wake
        self._frames: dict[str, deque[tuple[StreamFrame, Callable[[], None] | None]]] = {}
        # Called (in the job's thread) when the job is about to wait for input.
        self.on_idle: Callable[[], None] | None = None

    def add_port(self, port: str) -> None:
        """Make room for a port's frames."""
        with self._cond:
            self._frames.setdefault(port, deque())

    def put(
        self, port: str, frame: StreamFrame, on_taken: Callable[[], None] | None = None
    ) -> None:
        """Add a frame without waiting (the transport bounds how many arrive: its prefetch).

        Args:
            on_taken: called once the job has taken the frame (e.g. to ack it).
        """
        with self._cond:
            self._frames[port].append((frame, on_taken))
            self._cond.notify_all()

    def take(self, port: str) -> StreamFrame:
        """Return the next frame of a port, waiting for it.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        return self.take_any((port,))[1]

    def take_any(self, ports: Iterable[str]) -> tuple[str, StreamFrame]:
        """Return (port, frame) for the first of ``ports`` that has a frame, waiting.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        found = self.take_until(ports, None)
        assert found is not None
        return found

    def take_until(
        self, ports: Iterable[str], until: Callable[[], bool] | None
    ) -> tuple[str, StreamFrame] | None:
        """Return (port, frame) as :meth:`take_any` does, or None as soon as ``until()`` is
        true: ``until`` is asked under the inbox's lock whenever the inbox is woken, so
        whoever can make it true calls :meth:`wake` afterwards. No ports: wait for
        ``until`` only.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        ports = tuple(ports)
        idle = self.on_idle
        while True:
            with self._cond:
                found = self._take_locked(ports, wait=idle is None, until=until)
            if found is not None:
                break
            if idle is None:
                return None  # until() came true
            # Nothing to read: send what the job's outputs hold now, before waiting, so a
            # trickle of items is not held back by the linger.
            idle()
            idle = None
        port, frame, on_taken = found
        if on_taken is not None:
            on_taken()
        return port, frame

    def _take_locked(
        self, ports: tuple[str, ...], *, wait: bool, until: Callable[[], bool] | None = None
    ) -> tuple[str, StreamFrame, Callable[[], None] | None] | None:
        while True:
            if self._stop.is_set():
                raise Stopped("the flow was stopped")
            for port in ports:
                frames = self._frames[port]
                if frames:
                    frame, on_taken = frames.popleft()
                    self._cond.notify_all()
                    return port, frame, on_taken
            if not wait or (until is not None and until()):
                return None
            self._cond.wait(IDLE_WAIT_S)  # a stop wakes it: see wake

    def left(self, port: str) -> list[StreamFrame]:
        """Take, without waiting, the frames of a port that arrived and were not taken (a
        port read to its end-of-stream: what came after it)."""
        with self._cond:
            frames = list(self._frames.get(port, ()))
            self._frames[port] = deque()
        for _, on_taken in frames:
            if on_taken is not None:
                on_taken()
        return [frame for frame, _ in frames]

    def wake(self) -> None:
        """Wake every waiter so it looks at its stop signal now."""
        with self._cond:
            self._cond.notify_all()
