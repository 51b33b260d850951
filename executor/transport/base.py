"""The transport interface: how frames get from a job's outputs to other jobs' inputs.

A job is run by the same code in the embedded runner and in a cluster executor; only the
transport differs (``memory`` in one process, ``rabbitmq`` across executors). A transport
moves opaque frames (serialized ``dagyo.v1.Frame``) between named stream queues:

* :meth:`Transport.attach` starts delivering the frames of one queue into a job's
  :class:`~executor.stream.Inbox`;
* :meth:`Transport.sink` returns a :class:`FrameSink` that sends every frame to each of
  several queues (an output feeding several inputs), in order, waiting while any of them is
  full (backpressure).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from executor.inbox import Inbox


class FrameSink(Protocol):
    """Where an output port's frames go."""

    def send(self, frame: bytes, *, block: bool = True) -> bool:
        """Send one frame to every queue of the output, in order.

        Args:
            frame: a serialized ``dagyo.v1.Frame``.
            block: wait while a queue is full; when False, send nothing and return False
                instead of waiting.

        Raises:
            Stopped: when the job's stop signal is set while waiting.
        """
        ...

    def close(self) -> None:
        """Release what the sink holds; every sent frame has been delivered or failed."""
        ...


class Transport(Protocol):
    """Moves frames between stream queues; implemented by memory and rabbitmq."""

    def attach(self, queue: str, inbox: Inbox, port: str) -> None:
        """Deliver the frames of ``queue`` into ``inbox`` under ``port``, in order."""
        ...

    def detach(self, queue: str) -> None:
        """Stop delivering ``queue``: its job has ended."""
        ...

    def sink(self, queues: Sequence[str], *, stop: threading.Event) -> FrameSink:
        """Return a sink sending every frame to each of ``queues``."""
        ...
