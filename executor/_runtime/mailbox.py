"""The mailbox consumer: jobs pulled with a prefetch equal to the free job slots.

Runs on the I/O thread only. A job is acked when it starts (at most once: a started job is
never redelivered); jobs delivered but not started go back to the mailbox on drain, on a
crash (the broker requeues unacked messages) or when the connection is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.settings import ExecutorSettings
from executor.core.topology import MOVE_MAILBOX, QueueType, consume, declare_durable
from executor.pb.dagyo.v1.job_pb2 import Job

log = logging.getLogger("dagyo.mailbox")


class Mailbox:
    """Pulls jobs from one mailbox queue into free job slots.

    Args:
        name: the mailbox queue.
        max_jobs: job slots of this executor.
        on_job: called with each job once it is acked (started); a body that is not a
            dagyo.v1.Job is logged and rejected (dropped) on arrival.
        queue_type: classic, or quorum (replicated over the broker's nodes).
    """

    def __init__(
        self,
        name: str,
        *,
        max_jobs: int,
        on_job: Callable[[Job], None],
        queue_type: QueueType = QueueType.CLASSIC,
    ) -> None:
        self.name = name
        self.queue_type = queue_type
        self.max_jobs = max_jobs
        self.running = 0
        self.draining = False
        self._on_job = on_job
        self._channel: BlockingChannel | None = None
        self._consumer: str | None = None
        self._held: list[tuple[int, Job]] = []

    @classmethod
    def of(cls, settings: ExecutorSettings, *, on_job: Callable[[Job], None]) -> Mailbox:
        """The mailbox of an executor with ``settings`` (its name, slots and queue type)."""
        return cls(
            settings.mailbox,
            max_jobs=settings.max_jobs,
            on_job=on_job,
            queue_type=settings.queue_type,
        )

    @property
    def free(self) -> int:
        """Job slots not in use."""
        return self.max_jobs - self.running

    def open(self, connection: pika.BlockingConnection) -> None:
        """Declare the mailbox on a new connection and start pulling.

        Raises:
            QueueTypeMismatch: when the mailbox exists with the other queue type.
        """
        self._channel = connection.channel()
        # Durable: jobs wait in the mailbox across broker restarts and executor upgrades.
        declare_durable(self._channel, self.name, self.queue_type, how_to_move=MOVE_MAILBOX)
        self._consumer = None
        self._held = []
        self._consume()

    def lost(self) -> None:
        """Forget the channel: the connection is gone, and unstarted jobs went back."""
        self._channel = None
        self._consumer = None
        self._held = []

    def job_done(self) -> None:
        """A slot freed: start a held job, or pull again."""
        self.running -= 1
        if self._held and not self.draining:
            self._start(*self._held.pop(0))
        else:
            self._consume()

    def drain(self) -> None:
        """Take no more jobs; give the held ones back to the mailbox."""
        self.draining = True
        self._cancel()
        channel = self._channel
        for tag, _ in self._held:
            if channel is not None and channel.is_open:
                channel.basic_nack(tag, requeue=True)
        self._held = []

    def _consume(self) -> None:
        channel = self._channel
        if self._consumer is not None or self.draining or self.free <= 0 or channel is None:
            return
        # Prefetch = free slots, so the broker hands this executor no more jobs than it can
        # start now; the rest stay in the mailbox for other executors. Per consumer (pika's
        # global_qos=False), which is all a quorum queue supports, and enough: the channel
        # holds this one consumer, made anew with the prefetch of the moment each time a
        # slot frees (docs/protocol.md, Mailboxes).
        channel.basic_qos(prefetch_count=self.free)
        self._consumer = consume(channel, self.name, Job, self._deliver)

    def _cancel(self) -> None:
        if self._consumer is not None and self._channel is not None and self._channel.is_open:
            # pika nacks (requeues) deliveries it received but had not dispatched yet.
            self._channel.basic_cancel(self._consumer)
        self._consumer = None

    def _deliver(self, channel: Any, method: Any, _properties: Any, job: Job) -> None:
        if self.draining:
            channel.basic_nack(method.delivery_tag, requeue=True)
        elif self.free <= 0:
            # Acks at start free the prefetch window early, so a job may arrive while every
            # slot is busy; it waits here, unacked, for the next free slot.
            self._held.append((method.delivery_tag, job))
        else:
            self._start(method.delivery_tag, job)

    def _start(self, tag: int, job: Job) -> None:
        assert self._channel is not None
        self._channel.basic_ack(tag)
        self.running += 1
        if self.free <= 0:
            self._cancel()
        self._on_job(job)
