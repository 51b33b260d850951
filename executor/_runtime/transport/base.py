"""The transport interface: how frames get from a job's outputs to other jobs' inputs.

A job is run by the same code in the embedded runner and in a cluster executor; only the
transport differs (``memory`` in one process, ``rabbitmq`` across executors). A transport
moves opaque frames between named stream queues: serialized ``dagyo.v1.Frame`` on every
transport, and on the memory transport also :class:`~executor.core.frames.MessageFrame`, the
messages themselves (see :mod:`executor.core.frames`). Both transports give each method the same
meaning (tests/executor/test_transport_contract.py holds them to it):

* a stream queue holds at most ``max_frames`` frames waiting for its consumer, and the
  consumer holds at most ``prefetch_frames`` more, delivered to its inbox but not yet
  taken by the job: a producer that finds the stream full waits (backpressure);
* :meth:`Transport.open` gives one job its :class:`Streams`, closed when the job ends;
* :meth:`Streams.attach` starts delivering a queue's frames into the job's
  :class:`~executor._runtime.inbox.Inbox`, in order; :meth:`Streams.detach` stops it, and frames
  sent afterwards wait in the queue;
* :meth:`Streams.sink` returns a :class:`FrameSink` that sends every frame to each of
  several queues (an output feeding several inputs), in order.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from executor._runtime.inbox import Inbox
    from executor.core.frames import StreamFrame


class FrameSink(Protocol):
    """Where an output port's frames go."""

    def send(self, frame: StreamFrame, *, block: bool = True) -> bool:
        """Send one frame to every queue of the output, in order.

        Args:
            frame: a serialized ``dagyo.v1.Frame`` (a MessageFrame on the memory transport).
            block: wait while a queue is full. When False and *no* queue has room, send
                nothing and return False; once any queue took the frame, the full ones
                are waited for, so every queue gets the same frames in the same order.

        Returns:
            True when every queue has the frame.

        Raises:
            Stopped: when the job's stop signal is set while waiting, or a queue is gone.
        """
        ...

    def close(self) -> None:
        """Release what the sink holds; every sent frame has been delivered or failed."""
        ...


class Streams(Protocol):
    """The streams of one job, from :meth:`Transport.open` until :meth:`close`."""

    def attach(self, queue: str, inbox: Inbox, port: str) -> None:
        """Deliver the frames of ``queue`` into ``inbox`` under ``port``, in order.

        Raises:
            Stopped: when the queue is gone (its flow has ended).
        """
        ...

    def detach(self, queue: str) -> None:
        """Stop delivering ``queue``; frames sent from now on wait in the queue."""
        ...

    def sink(self, queues: Sequence[str]) -> FrameSink:
        """Return a sink sending every frame to each of ``queues``."""
        ...

    def close(self) -> None:
        """Detach every queue still attached and release the job's resources (idempotent)."""
        ...


class Transport(Protocol):
    """Moves frames between stream queues; implemented by memory and rabbitmq."""

    def open(self, *, stop: threading.Event) -> Streams:
        """Return the streams of one job whose stop signal is ``stop``.

        A send or an attach that waits raises Stopped once ``stop`` is set.
        """
        ...
