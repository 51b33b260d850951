"""The wire topology of docs/protocol.md in code: exchanges, queue arguments, consuming.

:func:`declare_exchanges` and :func:`declare_topology` declare what every flow relies on,
:func:`stream_arguments` are a stream queue's arguments, and every consumer of dagyo's
shared queues decodes through :func:`consume`.

A body that does not decode as the queue's message type (garbage published by hand, a
peer of another version) is logged and dropped — acked away or, on a manual-ack consumer,
rejected without requeue — so it can never kill the consuming thread or loop forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pika
import pika.exceptions
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.constants import (
    EVENTS_EXCHANGE,
    EVENTS_QUEUE,
    FAILURES_EXCHANGE,
    FAILURES_QUEUE,
    SHARDS,
    STOP_EXCHANGE,
    STREAM_MAX_FRAMES,
    QueueType,
    shard_events_queue,
    shard_failures_queue,
)
from executor.core.errors import QueueTypeMismatch

log = logging.getLogger("dagyo.consume")

M = TypeVar("M", bound=Message)

# handler(channel, method, properties, message): called on the I/O thread for each
# message that decoded.
Handler = Callable[[BlockingChannel, Any, pika.BasicProperties, M], None]


def consume(
    channel: BlockingChannel,
    queue: str,
    message_type: type[M],
    handler: Handler[M],
    *,
    auto_ack: bool = False,
) -> str:
    """Consume ``queue``, handing each body decoded as ``message_type`` to ``handler``.

    A body that does not decode is logged (queue, type, size, the parser's reason) and
    dropped: with ``auto_ack`` it is gone already; else it is rejected, not requeued. A
    message that decoded is the handler's to ack; a handler that raises is logged, and the
    consumer goes on with the next message.

    Returns:
        The consumer tag.
    """
    typename = message_type.DESCRIPTOR.full_name

    def on_message(
        ch: BlockingChannel, method: Any, properties: pika.BasicProperties, body: bytes
    ) -> None:
        try:
            message = message_type.FromString(body)
        except Exception as e:  # protobuf's DecodeError, or worse for a hostile body
            log.error(
                "dropped a malformed message on %s: %d bytes that are not a %s (%s)",
                queue,
                len(body),
                typename,
                e,
            )
            if not auto_ack and ch.is_open:
                ch.basic_reject(method.delivery_tag, requeue=False)
            return
        try:
            handler(ch, method, properties, message)
        except Exception:
            log.exception("a %s on %s could not be handled", typename, queue)

    return channel.basic_consume(queue, on_message, auto_ack=auto_ack)


def declare_exchanges(channel: BlockingChannel) -> None:
    """Declare the exchanges every dagyo process uses (idempotent).

    Durable, so a broker restart keeps them and every process finds the same names again.
    """
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(FAILURES_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(STOP_EXCHANGE, "fanout", durable=True)


# How to move each kind of durable queue to another type, for QueueTypeMismatch.
MOVE_MAILBOX = (
    "move with a new version of the progdef (any change to its progdef.json or image): it "
    "gets a new mailbox of the new type while the old one drains and is retired"
)
MOVE_SHARED_QUEUE = (
    "move with every dagyo process stopped: delete it once empty "
    "(`rabbitmqctl delete_queue NAME`) and start them again"
)


def durable_arguments(queue_type: QueueType) -> dict[str, Any]:
    """The arguments of a durable queue of ``queue_type``.

    A quorum queue is replicated on (by default) every node of the cluster, a majority
    confirming each message: a job or report waiting in it outlives the loss of any one
    node. A classic queue lives on one node. The type is always said, classic too, so a
    declare against a queue of the other type is refused (PRECONDITION_FAILED) instead of
    quietly using the queue that is there.
    """
    return {"x-queue-type": queue_type.value}


def declare_durable(
    channel: BlockingChannel, queue: str, queue_type: QueueType, *, how_to_move: str
) -> None:
    """Declare one durable queue of ``queue_type`` (idempotent).

    Raises:
        QueueTypeMismatch: when it exists with the other type (the channel is then closed).
    """
    try:
        channel.queue_declare(queue, durable=True, arguments=durable_arguments(queue_type))
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 406 and "x-queue-type" in str(e.reply_text):
            other = QueueType.CLASSIC if queue_type is QueueType.QUORUM else QueueType.QUORUM
            raise QueueTypeMismatch(queue, queue_type.value, other.value, how_to_move) from None
        raise


def shard_queues() -> list[tuple[str, str, str]]:
    """Every shard's two durable queues: (queue, exchange, binding key)."""
    queues = []
    for number in range(SHARDS):
        shard = f"{number:x}"
        queues.append((shard_events_queue(shard), EVENTS_EXCHANGE, f"job.*.{shard}"))
        queues.append((shard_failures_queue(shard), FAILURES_EXCHANGE, f"{shard}.*"))
    return queues


def declare_topology(channel: BlockingChannel, queue_type: QueueType = QueueType.CLASSIC) -> None:
    """Declare the exchanges and the shards' queues every flow relies on (idempotent).

    They are durable so a broker restart keeps them: executors and the schedulers find the
    same names again, and events and failure reports sent while a shard's owner was away
    wait in its queues. A shard's failures queue takes every report of its flows
    (``{shard}.*``): a flow needs no failure queue, nor binding, of its own.

    Raises:
        QueueTypeMismatch: when one of them exists with the other type.
    """
    declare_exchanges(channel)
    for queue, exchange, key in shard_queues():
        declare_durable(channel, queue, queue_type, how_to_move=MOVE_SHARED_QUEUE)
        channel.queue_bind(queue, exchange, routing_key=key)


def delete_topology(channel: BlockingChannel) -> None:
    """Delete what :func:`declare_topology` declared: the shards' queues (and the single
    queues of older versions) and the exchanges (``dagyo up --clean``, once its schedulers
    and executors are gone)."""
    for queue in (EVENTS_QUEUE, FAILURES_QUEUE, *(q for q, _, _ in shard_queues())):
        channel.queue_delete(queue)
    for exchange in (EVENTS_EXCHANGE, FAILURES_EXCHANGE, STOP_EXCHANGE):
        channel.exchange_delete(exchange)


def stream_arguments(max_frames: int = STREAM_MAX_FRAMES) -> dict[str, Any]:
    """The arguments of a stream or export queue (see docs/protocol.md, Streams).

    ``x-max-length`` bounds the frames a stream holds; ``reject-publish`` makes the broker
    nack a publish into a full stream instead of dropping its oldest frame, so the producer
    waits and nothing is lost (backpressure).
    """
    return {"x-max-length": max_frames, "x-overflow": "reject-publish"}
