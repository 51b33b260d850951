"""Guarded consuming: every consumer of dagyo's shared queues decodes through ``consume``.

A body that does not decode as the queue's message type (garbage published by hand, a
peer of another version) is logged and dropped — acked away or, on a manual-ack consumer,
rejected without requeue — so it can never kill the consuming thread or loop forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pika
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

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
