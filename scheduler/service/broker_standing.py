"""The scheduler's own queues (scheduler.service.broker): its queue of heartbeats and
goodbyes, and the events and failures queues of the shards it owns, consumed for as long
as it runs them, again after every reconnection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.constants import (
    EVENTS_EXCHANGE,
    flow_of_failure_key,
    shard_events_queue,
    shard_failures_queue,
)
from executor.core.errors import BrokerError
from executor.core.topology import QueueType, declare_topology
from executor.pb.dagyo.v1.events_pb2 import Event
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.service.consumers import Consumers, Handler, KeyedHandler

log = logging.getLogger("dagyo.scheduler.broker")

# Events and failure reports are small and handled at once; a deep prefetch keeps the broker
# from waiting on a round trip per heartbeat when hundreds of executors report.
EVENTS_PREFETCH = 256
# Export frames are stored (by the store's writer) before they are acked; a few frames in
# flight hide the ack and the write, and the stream's bound (x-max-length) still holds the
# rest in the broker.
EXPORT_PREFETCH_FRAMES = 8


@dataclass(frozen=True)
class _Standing:
    """A consumer of one of the scheduler's own queues, kept for as long as it runs.

    ``bindings`` makes it a queue of this connection alone (exclusive, auto-delete, named
    by the broker, declared again after each reconnection), bound to the events exchange
    with each key; ``queue`` is then only the name it is kept under.
    """

    queue: str
    message_type: type[Message]
    handler: Handler | None = None
    keyed: KeyedHandler | None = None  # gets the routing key first
    bindings: tuple[str, ...] = ()


# The scheduler's own queue of every executor's heartbeats and goodbyes (docs/protocol.md).
HEARTBEATS = "heartbeats"
LIVENESS_KEYS = ("heartbeat.*", "goodbye.*")


class StandingQueues:
    """The standing consumers of :class:`scheduler.service.broker.Broker` (a mixin: the
    broker gives the channel, the calls on its I/O thread and the reconnection)."""

    queue_type: QueueType
    _standing: dict[str, _Standing]
    _own_queues: dict[str, str]
    _consumers: Consumers
    _work: BlockingChannel | None

    if TYPE_CHECKING:  # the broker's, and its QueueOperations'

        def call(self, function: Callable[[], Any]) -> Any: ...

        def queue_depth(self, queue: str) -> int | None: ...

        def _channel(self) -> BlockingChannel: ...

        def _on_connect(self, connection: pika.BlockingConnection) -> None: ...

    def _standing_cancelled(self, standing: _Standing) -> None:
        # One of the scheduler's own queues was deleted under it: declare it again, go on.
        if self._standing.get(standing.queue) is not standing:
            return  # no longer consumed here (a shard given up)
        log.warning("%s was deleted; declaring it again", standing.queue)
        declare_topology(self._channel(), self.queue_type)
        self._consume_standing(standing)

    def consume_heartbeats(self, handler: Handler) -> None:
        """Consume every executor's heartbeats and goodbyes, on a queue of this connection,
        now and after every reconnection."""
        self._stand(_Standing(HEARTBEATS, Event, handler=handler, bindings=LIVENESS_KEYS))

    def consume_shard(self, shard: str, events: Handler, failures: KeyedHandler) -> None:
        """Consume one shard's events and failures queues, now and after every reconnection.

        ``failures`` gets each report's flow id (from its routing key) first.
        """
        self._stand(_Standing(shard_events_queue(shard), Event, handler=events))

        def keyed(key: str, report: Any, properties: pika.BasicProperties) -> Any:
            return failures(flow_of_failure_key(key), report, properties)

        self._stand(_Standing(shard_failures_queue(shard), FailureReport, keyed=keyed))

    def liveness_backlog(self) -> int:
        """How many heartbeats and goodbyes wait in this scheduler's queue of them.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        queue = self._own_queues.get(HEARTBEATS)
        return 0 if queue is None else self.queue_depth(queue) or 0

    def stop_shard(self, shard: str) -> None:
        """Stop consuming one shard's queues (what was delivered and not acked goes back to
        them with :meth:`reset`)."""
        for queue in (shard_events_queue(shard), shard_failures_queue(shard)):
            if self._standing.pop(queue, None) is not None:
                self.call(partial(self._consumers.cancel, queue))

    def reset(self) -> None:
        """Close the work channel and open it again, consumers and all: every message
        delivered and not acked goes back to its queue (for the scheduler that owns its flow
        now; one of a flow still run here comes again, and is found stored already)."""

        def reset() -> None:
            work = self._work
            if work is None or not work.is_open:
                return
            connection = work.connection
            self._work = None
            try:
                work.close()
            except pika.exceptions.AMQPError:
                pass
            self._on_connect(connection)

        try:
            self.call(reset)
        except BrokerError as e:
            log.warning("cannot open the scheduler's channel again yet: %s", e)

    def _stand(self, standing: _Standing) -> None:
        self._standing[standing.queue] = standing
        self.call(lambda: self._consume_standing(standing))

    def _consume_standing(self, standing: _Standing) -> None:
        channel = self._channel()
        queue = standing.queue
        if standing.bindings:
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            self._own_queues[standing.queue] = queue
            for key in standing.bindings:
                channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key=key)
        channel.basic_qos(prefetch_count=EVENTS_PREFETCH)
        try:
            self._consumers.consume(
                queue,
                standing.handler,
                keyed=standing.keyed,
                on_cancel=partial(self._standing_cancelled, standing),
                message_type=standing.message_type,
            )
        finally:
            self._channel().basic_qos(prefetch_count=EXPORT_PREFETCH_FRAMES)
