"""The queue operations of the scheduler's broker: probing, declaring and deleting queues.

Part of :class:`scheduler.service.broker.Broker`, which owns the connection and its I/O
thread: every operation here runs on that thread, through ``call``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel

from executor.core.errors import BrokerError
from executor.core.topology import MOVE_MAILBOX, QueueType, declare_durable
from scheduler.service.channels import ProbeChannel, QueueLanes
from scheduler.service.consumers import Consumers


class QueueOperations:
    """The broker's queue operations; :class:`~scheduler.service.broker.Broker` provides
    the connection they run on (``call``, ``_channel``) and the channels they use."""

    queue_type: QueueType
    _probe: ProbeChannel
    _lanes: QueueLanes
    _consumers: Consumers
    _mailboxes: set[str]  # the mailboxes declared on this connection
    call: Callable[[Callable[[], Any]], Any]
    _channel: Callable[[], BlockingChannel]

    def consumer_count(self, queue: str) -> int | None:
        """How many consumers ``queue`` has, or None when it does not exist."""
        return self.call(lambda: self._probe.count(queue))  # type: ignore[no-any-return]

    def missing_queues(self, queues: Iterable[str]) -> list[str]:
        """The queues of ``queues`` that do not exist."""
        names = list(queues)
        return self.call(lambda: [q for q in names if self._probe.count(q) is None])  # type: ignore[no-any-return]

    def queue_depth(self, queue: str) -> int | None:
        """How many messages wait in ``queue``, or None when it does not exist."""
        return self.call(lambda: self._probe.count(queue, depth=True))  # type: ignore[no-any-return]

    def declare_mailbox(self, mailbox: str) -> None:
        """Declare a mailbox (durable: it outlives broker restarts, like its executors).

        Once per connection: a publish to a mailbox deleted since comes back (mandatory)
        and fails the submit, so the cache cannot lose a job.
        """
        if mailbox in self._mailboxes:
            return

        def declare() -> None:
            declare_durable(self._channel(), mailbox, self.queue_type, how_to_move=MOVE_MAILBOX)
            self._mailboxes.add(mailbox)

        self.call(declare)

    def declare_flow_queues(self, stream_queues: Iterable[str]) -> None:
        """Declare a flow's bounded stream and export queues.

        Flow queues are neither durable nor auto-delete: they live exactly as long as the
        flow, the scheduler deletes them when it ends, and a broker restart loses them,
        which fails the flow rather than resuming it half-empty.
        """
        streams = list(stream_queues)

        def declare() -> None:
            self._channel()  # fail fast (and recover) when the work channel is gone
            self._lanes.declare(streams)

        self._call_on_lanes(declare)

    def declare_ahead(self, stream_queues: Iterable[str], done: Callable[[], None]) -> None:
        """Send the declares of queues no flow uses yet, without waiting for the broker:
        ``done`` runs on the I/O thread once every one exists (scheduler.service.spares).

        The I/O thread goes on with the flows meanwhile; a refused declare closes its lane,
        and ``done`` then never runs.
        """
        streams = list(stream_queues)
        if not streams:
            done()
            return

        def declare() -> None:
            self._channel()  # fail fast (and recover) when the work channel is gone
            self._lanes.declare_ahead(streams, done)

        self.call(declare)

    def delete_queues(self, queues: Iterable[str]) -> None:
        """Stop consuming and delete each queue; a queue already gone is no error.

        The queues go side by side on the lanes; a consumer of one is forgotten, not
        cancelled (a round trip each): the broker cancels it with its queue, and that
        cancel then calls nothing.
        """
        names = list(queues)

        def delete() -> None:
            self._forget_consumers(names)
            self._lanes.delete(names)

        self._call_on_lanes(delete)

    def delete_queues_then(self, queues: Iterable[str], then: Callable[[], None]) -> None:
        """Delete each queue as ``delete_queues`` does, without waiting for the broker:
        ``then`` runs on the I/O thread once every one is gone (at once when there are
        none), and never when the broker refused one or the connection was lost first.

        Raises:
            BrokerError: when the connection is down.
        """
        names = list(queues)

        def delete() -> None:
            self._forget_consumers(names)
            if names:
                self._lanes.delete_ahead(names, then)
            else:
                then()

        self.call(delete)

    def delete_if_idle(self, queue: str) -> bool:
        """Delete ``queue`` only if no message waits and no consumer pulls it (atomic in
        the broker); True when it is gone."""

        return bool(self.call(lambda: self._probe.delete_if_idle(queue)))

    def _forget_consumers(self, queues: list[str]) -> None:
        self._channel()  # fail fast (and recover) when the work channel is gone
        for queue in queues:
            self._consumers.forget(queue)

    def _call_on_lanes(self, function: Callable[[], None]) -> None:
        try:
            self.call(function)
        except BrokerError:
            self._lanes.reset()  # a refused declare or delete closed its lane
            raise
