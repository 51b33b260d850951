"""The in-memory transport: every job of a flow in one process (the embedded runner).

A stream queue is the consuming job's Inbox port, bounded to ``max_frames`` frames: a
producer that finds it full waits, exactly as it would on a full RabbitMQ stream queue.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from executor.constants import STOP_POLL_S, STREAM_MAX_FRAMES
from executor.errors import Stopped
from executor.inbox import Inbox


class MemoryTransport:
    """Streams between jobs of one process, each bounded to ``max_frames`` frames."""

    def __init__(self, *, max_frames: int = STREAM_MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self._routes: dict[str, tuple[Inbox, str]] = {}
        self._cond = threading.Condition()

    def attach(self, queue: str, inbox: Inbox, port: str) -> None:
        """Deliver the frames sent to ``queue`` into ``inbox`` under ``port``."""
        with self._cond:
            self._routes[queue] = (inbox, port)
            self._cond.notify_all()

    def detach(self, queue: str) -> None:
        """Drop frames sent to ``queue`` from now on: its job has ended."""
        with self._cond:
            route = self._routes.get(queue)
        if route is not None:
            route[0].close_port(route[1])

    def depth(self, queue: str) -> int:
        """Return how many frames ``queue`` holds now (0 before it is attached)."""
        with self._cond:
            route = self._routes.get(queue)
        return route[0].depth(route[1]) if route else 0

    def sink(self, queues: Sequence[str], *, stop: threading.Event) -> MemorySink:
        """Return a sink sending every frame to each of ``queues``."""
        return MemorySink(self, tuple(queues), stop)

    def route(self, queue: str, stop: threading.Event) -> tuple[Inbox, str]:
        """Return where ``queue`` delivers, waiting until its consumer has attached.

        Raises:
            Stopped: when ``stop`` is set while waiting.
        """
        with self._cond:
            while queue not in self._routes:
                if stop.is_set():
                    raise Stopped("the flow was stopped")
                self._cond.wait(STOP_POLL_S)
            return self._routes[queue]


class MemorySink:
    """Sends frames into the inboxes of the consumers of one output, in order."""

    def __init__(
        self, transport: MemoryTransport, queues: tuple[str, ...], stop: threading.Event
    ) -> None:
        self._transport = transport
        self._queues = queues
        self._stop = stop
        self._routes: list[tuple[Inbox, str]] | None = None

    def send(self, frame: bytes, *, block: bool = True) -> bool:
        """Put the frame in every consumer's inbox, waiting while one is full."""
        if self._routes is None:
            self._routes = [self._transport.route(q, self._stop) for q in self._queues]
        capacity = self._transport.max_frames
        # Each stream has exactly one producer (this sink), so room seen here stays free.
        if not block and not all(inbox.has_room(port, capacity) for inbox, port in self._routes):
            return False
        for inbox, port in self._routes:
            inbox.put_wait(port, frame, capacity, self._stop)
        return True

    def close(self) -> None:
        """Nothing to release: frames were handed over as they were sent."""
