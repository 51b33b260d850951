"""The consumers on the scheduler's work channel, and what to do when the broker cancels one.

Used on the broker's I/O thread only. The broker cancels a consumer when its queue is
deleted under it; :meth:`Consumers.cancelled` then calls what the consumer was given.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import pika
import pika.exceptions
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.topology import consume

log = logging.getLogger("dagyo.scheduler.broker")

# A handler that stored what the message changed behind (scheduler.service.store.writer)
# returns this: it calls the function it is given, from any thread, once that is stored.
AckLater = Callable[[Callable[[], None]], None]
# A handler gets each message (its body, or the message decoded as the consumer's message
# type) and properties on the I/O thread; the message is acked after it returns (also when it
# raises: a message that cannot be handled is not retried), or once stored when it returns
# an AckLater. A body that does not decode as the message type is logged and dropped by
# executor.core.topology.consume.
Handler = Callable[[Any, pika.BasicProperties], AckLater | None]
# The same, given the message's routing key first (the failures queue: the flow id).
KeyedHandler = Callable[[str, Any, pika.BasicProperties], AckLater | None]


class Consumers:
    """Queue -> consumer tag on the work channel, and tag -> what to call on a cancel.

    Args:
        work: the work channel (it raises BrokerError while there is none).
    """

    def __init__(self, work: Callable[[], BlockingChannel]) -> None:
        self._work = work
        self._consumers: dict[str, str] = {}
        self._on_cancel: dict[str, Callable[[], None]] = {}
        # Acks of messages stored since (appended by the writer's thread). The I/O thread
        # sends them before it handles the next message: pika hands it every message
        # prefetched in a row before it runs a callback from another thread, and a broker
        # waiting for those acks would send nothing more meanwhile.
        self._stored: deque[tuple[BlockingChannel, int]] = deque()

    def clear(self) -> None:
        """Forget every consumer: the channel they were on is gone."""
        self._consumers.clear()
        self._on_cancel.clear()

    def consume(
        self,
        queue: str,
        handler: Handler | None,
        *,
        on_cancel: Callable[[], None],
        message_type: type[Message] | None = None,
        keyed: KeyedHandler | None = None,
    ) -> None:
        """Consume ``queue`` (once: a queue consumed already is left as it is).

        Args:
            handler: gets each message, then it is acked.
            keyed: instead of ``handler``, gets each message's routing key and the message.
            on_cancel: called if the broker cancels the consumer.
            message_type: decode each body as this first (a malformed one is dropped);
                None hands the handler the body.
        """
        if queue in self._consumers:
            return

        def on_message(
            channel: BlockingChannel, method: Any, properties: pika.BasicProperties, message: Any
        ) -> None:
            self.send_acks()
            later: AckLater | None = None
            try:
                if keyed is not None:
                    later = keyed(method.routing_key, message, properties)
                elif handler is not None:
                    later = handler(message, properties)
            except Exception:
                log.exception("a message on %s could not be handled; dropped", queue)
            if later is None:
                _ack(channel, method.delivery_tag)
            else:
                later(partial(self._stored_ack, channel, method.delivery_tag))

        if message_type is None:
            tag = self._work().basic_consume(queue, on_message, auto_ack=False)
        else:
            tag = consume(self._work(), queue, message_type, on_message)
        self._consumers[queue] = tag
        self._on_cancel[tag] = on_cancel

    def send_acks(self) -> None:
        """Ack the messages stored since the last call (I/O thread)."""
        while self._stored:
            channel, delivery_tag = self._stored.popleft()
            _ack(channel, delivery_tag)

    def _stored_ack(self, channel: BlockingChannel, delivery_tag: int) -> None:
        """A message is stored (any thread): acked before the next message is handled, or
        as soon as the I/O thread is idle. A connection lost meanwhile gives the message to
        the next consumer again, which finds it stored already (an export's seq, an event
        that changes nothing twice)."""
        self._stored.append((channel, delivery_tag))
        try:
            channel.connection.add_callback_threadsafe(self.send_acks)
        except pika.exceptions.AMQPError:
            pass

    def forget(self, queue: str) -> None:
        """Forget the consumer of ``queue`` (about to be deleted, which cancels it in the
        broker); the broker's cancel then calls nothing."""
        tag = self._consumers.pop(queue, None)
        if tag is not None:
            self._on_cancel.pop(tag, None)

    def cancel(self, queue: str) -> None:
        """Stop consuming ``queue`` (I/O thread); what it delivered and was not acked stays
        unacked until the channel closes."""
        tag = self._consumers.pop(queue, None)
        if tag is None:
            return
        self._on_cancel.pop(tag, None)
        work = self._work()
        if work.is_open:
            work.basic_cancel(tag)

    def cancelled(self, method: Any) -> None:
        """The work channel's cancel callback: forget the consumer, call its ``on_cancel``."""
        tag = method.method.consumer_tag
        for queue, known in list(self._consumers.items()):
            if known == tag:
                del self._consumers[queue]
        callback = self._on_cancel.pop(tag, None)
        if callback is not None:
            callback()


def _ack(channel: BlockingChannel, delivery_tag: int) -> None:
    if channel.is_open:  # else it goes back to its queue with the channel
        channel.basic_ack(delivery_tag)
