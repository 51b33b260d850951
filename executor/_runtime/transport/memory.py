"""The in-memory transport: every job of a flow in one process (the embedded runner).

A stream queue here behaves as a RabbitMQ stream queue does: it holds up to
``max_frames`` frames waiting for its consumer, the consumer takes up to
``prefetch_frames`` more ahead of the job reading them (each counts until the job takes
it, as an unacked delivery does), and a producer that finds the queue full waits. Frames
are handed over as they are: serialized, or MessageFrames holding the messages themselves.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from executor._runtime.inbox import Inbox
from executor.core.constants import STOP_POLL_S, STREAM_MAX_FRAMES, STREAM_PREFETCH_FRAMES
from executor.core.errors import Stopped
from executor.core.frames import StreamFrame


class MemoryQueue:
    """One stream queue: the frames waiting for its consumer, and where they go."""

    def __init__(self, name: str, *, max_frames: int, prefetch_frames: int) -> None:
        self.name = name
        self._max_frames = max_frames
        self._prefetch_frames = prefetch_frames
        self._cond = threading.Condition()
        self._waiting: deque[StreamFrame] = deque()
        self._inbox: Inbox | None = None
        self._port = ""
        self._delivered = 0  # delivered to the inbox and not yet taken by the job

    def attach(self, inbox: Inbox, port: str) -> None:
        """Deliver the waiting frames, then every new one, into ``inbox`` under ``port``."""
        with self._cond:
            self._inbox, self._port, self._delivered = inbox, port, 0
            self._deliver_locked()

    def detach(self, inbox: Inbox) -> None:
        """Stop delivering into ``inbox``; frames sent from now on wait here."""
        with self._cond:
            if self._inbox is inbox:
                self._inbox = None

    def depth(self) -> int:
        """Return how many frames wait for the consumer (delivered ones not counted)."""
        with self._cond:
            return len(self._waiting)

    def offer(self, frame: StreamFrame) -> bool:
        """Add the frame if the queue has room; return False when it is full."""
        with self._cond:
            return self._offer_locked(frame)

    def put(self, frame: StreamFrame, stop: threading.Event) -> None:
        """Add the frame, waiting while the queue is full.

        Raises:
            Stopped: when ``stop`` (the producer's signal) is set while waiting.
        """
        with self._cond:
            while not self._offer_locked(frame):
                if stop.is_set():
                    raise Stopped("the flow was stopped")
                self._cond.wait(STOP_POLL_S)

    def _offer_locked(self, frame: StreamFrame) -> bool:
        if len(self._waiting) >= self._max_frames:
            return False
        self._waiting.append(frame)
        self._deliver_locked()
        return True

    def _deliver_locked(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        while self._waiting and self._delivered < self._prefetch_frames:
            self._delivered += 1
            inbox.put(self._port, self._waiting.popleft(), on_taken=lambda: self._taken(inbox))
        self._cond.notify_all()  # room for a waiting producer

    def _taken(self, inbox: Inbox) -> None:
        with self._cond:
            if self._inbox is inbox:
                self._delivered -= 1
                self._deliver_locked()


class MemoryTransport:
    """The stream queues of one process, created on first use.

    Args:
        max_frames: how many frames a queue holds for its consumer before a producer waits.
        prefetch_frames: how many more frames a consumer takes ahead of its job.
    """

    def __init__(
        self,
        *,
        max_frames: int = STREAM_MAX_FRAMES,
        prefetch_frames: int = STREAM_PREFETCH_FRAMES,
    ) -> None:
        self.max_frames = max_frames
        self.prefetch_frames = prefetch_frames
        self._queues: dict[str, MemoryQueue] = {}
        self._lock = threading.Lock()

    def open(self, *, stop: threading.Event) -> MemoryStreams:
        """Return the streams of one job."""
        return MemoryStreams(self, stop)

    def queue(self, name: str) -> MemoryQueue:
        """Return the queue named ``name``, made empty on first use."""
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = MemoryQueue(
                    name, max_frames=self.max_frames, prefetch_frames=self.prefetch_frames
                )
            return queue

    def depth(self, name: str) -> int:
        """Return how many frames wait in queue ``name`` for its consumer.

        The twin of a RabbitMQ queue's message count: frames delivered to the consumer and
        not yet taken are not counted.
        """
        return self.queue(name).depth()


class MemoryStreams:
    """The streams of one job on a :class:`MemoryTransport`."""

    def __init__(self, transport: MemoryTransport, stop: threading.Event) -> None:
        self._transport = transport
        self._stop = stop
        self._attached: dict[str, Inbox] = {}

    def attach(self, queue: str, inbox: Inbox, port: str) -> None:
        """Deliver the frames of ``queue`` into ``inbox`` under ``port``, in order."""
        self._transport.queue(queue).attach(inbox, port)
        self._attached[queue] = inbox

    def detach(self, queue: str) -> None:
        """Stop delivering ``queue``; frames sent from now on wait in the queue."""
        inbox = self._attached.pop(queue, None)
        if inbox is not None:
            self._transport.queue(queue).detach(inbox)

    def sink(self, queues: Sequence[str]) -> MemorySink:
        """Return a sink sending every frame to each of ``queues``."""
        return MemorySink([self._transport.queue(name) for name in queues], self._stop)

    def close(self) -> None:
        """Detach every queue still attached."""
        for queue in list(self._attached):
            self.detach(queue)


class MemorySink:
    """Sends an output's frames to its stream queues, waiting while one is full."""

    def __init__(self, queues: list[MemoryQueue], stop: threading.Event) -> None:
        self._queues = queues
        self._stop = stop

    def send(self, frame: StreamFrame, *, block: bool = True) -> bool:
        """Put the frame in every queue, waiting for the full ones (see FrameSink.send)."""
        full = [queue for queue in self._queues if not queue.offer(frame)]
        if full and not block and len(full) == len(self._queues):
            return False
        for queue in full:
            queue.put(frame, self._stop)
        return True

    def close(self) -> None:
        """Nothing to release: frames were handed over as they were sent."""
