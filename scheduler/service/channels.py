"""The scheduler's side channels, each for one kind of AMQP work the work channel must not do.

Every one is used on the broker's I/O thread only, opens its channel(s) on first use from
``open_channel`` (a new channel on the current connection), and is told to ``reset``
when the connection is lost (or recovered): its channels went with it.

* :class:`ProbeChannel` makes passive declares and conditional deletes, which the broker
  answers with a channel error when the answer is "no": it is reopened after each one;
* :class:`QueueLanes` declares and deletes a flow's queues on several channels side by side;
* :class:`JobsChannel` publishes jobs without confirms and learns of returned ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.channel
import pika.exceptions
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.errors import BrokerError
from executor.core.topology import stream_arguments

# Channels used side by side to declare or delete a flow's queues in parallel.
LANES = 8


def nowait(channel: BlockingChannel) -> pika.channel.Channel:
    """The asynchronous channel under a BlockingChannel: the one reach into pika's privates.

    pika's BlockingChannel waits for the broker's answer to every method and has no
    ``nowait``; the channel it wraps (its ``_impl``) sends a method with ``callback=None``
    and goes on, and registers callbacks (a return) that run as frames arrive.
    """
    return channel._impl


class _OneChannel:
    """A channel opened on first use, and again once it closed.

    Args:
        open_channel: opens a channel on the current connection.
    """

    def __init__(self, open_channel: Callable[[], BlockingChannel]) -> None:
        self._open_channel = open_channel
        self._channel: BlockingChannel | None = None

    def reset(self, *, close: bool = False) -> None:
        """Forget the channel (closing it first when its connection stays)."""
        if close and self._channel is not None and self._channel.is_open:
            self._channel.close()
        self._channel = None

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._channel = self._open_channel()
            self._set_up(self._channel)
        return self._channel

    def _set_up(self, channel: BlockingChannel) -> None:
        """Prepare a channel just opened (nothing by default)."""


class ProbeChannel(_OneChannel):
    """Passive declares and conditional deletes on a channel of their own."""

    def count(self, queue: str, *, depth: bool = False) -> int | None:
        """The consumers of ``queue`` (its messages with ``depth``); None when it does not
        exist.

        Raises:
            BrokerError: when the broker refuses the look-up for another reason.
        """
        try:
            ok = self._open().queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            self._channel = None
            if e.reply_code == 404:
                return None
            raise BrokerError(f"the broker refused to look up queue {queue}: {e}") from e
        return int(ok.method.message_count if depth else ok.method.consumer_count)

    def delete_if_idle(self, queue: str) -> bool:
        """Delete ``queue`` only if no message waits and no consumer pulls it (atomic in
        the broker); True when it is gone.

        Raises:
            BrokerError: when the broker refuses the delete for another reason.
        """
        try:
            self._open().queue_delete(queue, if_unused=True, if_empty=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            self._channel = None
            if e.reply_code == 404:
                return True
            if e.reply_code == 406:  # PRECONDITION_FAILED: not empty, or in use
                return False
            raise BrokerError(f"the broker refused to delete queue {queue}: {e}") from e
        return True


def _after_all(answers: int, done: Callable[[], None]) -> Callable[[Any], None]:
    """A callback for each of ``answers`` broker answers that calls ``done`` on the last."""
    left = answers

    def answered(_frame: Any) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done()

    return answered


class QueueLanes:
    """Up to LANES channels on which a flow's queues are declared and deleted in parallel.

    Args:
        open_channel: opens a channel on the current connection.
    """

    def __init__(self, open_channel: Callable[[], BlockingChannel]) -> None:
        self._open_channel = open_channel
        self._pool: list[BlockingChannel] = []

    def reset(self) -> None:
        """Forget the channels: their connection is gone, or a refused method closed one."""
        self._pool = []

    def _lanes(self, wanted: int) -> list[BlockingChannel]:
        self._pool = [lane for lane in self._pool if lane.is_open]
        while len(self._pool) < min(wanted, LANES):
            self._pool.append(self._open_channel())
        return self._pool[: max(1, min(wanted, LANES))]

    def declare(self, streams: Sequence[str]) -> None:
        """Declare the bounded stream (and export) queues of a flow.

        Raises:
            pika.exceptions.AMQPChannelError: when the broker refused a declare.
        """
        if not streams:
            return
        lanes = self._lanes(len(streams))
        # The broker creates queues declared on different channels in parallel, so each
        # queue goes on a lane of its own, sent without waiting for its answer; then one
        # passive declare per lane waits for everything sent on it, and raises if any
        # failed. A flow's queues then cost about one declare's time instead of one each.
        last: dict[int, str] = {}
        for index, queue in enumerate(streams):
            lane = lanes[index % len(lanes)]
            nowait(lane).queue_declare(queue, arguments=stream_arguments(), callback=None)
            last[index % len(lanes)] = queue
        for index, queue in last.items():
            lanes[index].queue_declare(queue, passive=True)

    def declare_ahead(self, streams: Sequence[str], done: Callable[[], None]) -> None:
        """Declare stream queues without waiting for them: ``done`` runs (on the I/O thread)
        once the broker has made every one, and never when it refused one (which closes
        that lane: the caller gives up after a while)."""
        lanes = self._lanes(len(streams))
        made = _after_all(len(streams), done)
        for index, queue in enumerate(streams):
            lane = nowait(lanes[index % len(lanes)])
            lane.queue_declare(queue, arguments=stream_arguments(), callback=made)

    def delete_ahead(self, queues: Sequence[str], done: Callable[[], None]) -> None:
        """Delete queues without waiting: ``done`` runs (on the I/O thread) once the broker
        has deleted every one, and never when it refused one (which closes that lane)."""
        lanes = self._lanes(len(queues))
        deleted = _after_all(len(queues), done)
        for index, queue in enumerate(queues):
            nowait(lanes[index % len(lanes)]).queue_delete(queue, callback=deleted)

    def delete(self, queues: Sequence[str]) -> None:
        """Delete each queue (one already gone is no error, as in RabbitMQ); return once
        the broker has deleted them all.

        Raises:
            pika.exceptions.AMQPChannelError: when the broker refused a delete.
        """
        if not queues:
            return
        lanes = self._lanes(len(queues))
        # As in declare: each lane's deletes go out without waiting, but its last one waits,
        # and a channel's methods are handled in order, so its answer means all are done.
        spread: dict[int, list[str]] = {}
        for index, queue in enumerate(queues):
            spread.setdefault(index % len(lanes), []).append(queue)
        for index, names in spread.items():
            for queue in names[:-1]:
                nowait(lanes[index]).queue_delete(queue, callback=None)
        for index, names in spread.items():
            lanes[index].queue_delete(names[-1])


class JobsChannel(_OneChannel):
    """A channel without confirms for publishing jobs back to back.

    Args:
        open_channel: opens a channel on the current connection.
    """

    def __init__(self, open_channel: Callable[[], BlockingChannel]) -> None:
        super().__init__(open_channel)
        self._returned: list[str] = []

    def _set_up(self, channel: BlockingChannel) -> None:
        # On the underlying channel, so a return is seen as it arrives, before the
        # passive declare that follows the publishes answers.
        nowait(channel).add_on_return_callback(self._on_return)

    def _on_return(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self._returned.append(method.routing_key)

    def publish(
        self, jobs: Sequence[tuple[str, Message]], properties: pika.BasicProperties
    ) -> None:
        """Publish each (mailbox, job descriptor), then wait once for the broker to have
        handled them all.

        Raises:
            BrokerError: when a mailbox took no job.
        """
        lane = self._open()
        self._returned.clear()
        for mailbox, job in jobs:
            lane.basic_publish("", mailbox, job.SerializeToString(), properties, mandatory=True)
        lane.queue_declare(jobs[-1][0], passive=True)
        if self._returned:
            raise BrokerError(f"no mailbox took the jobs for {', '.join(self._returned)}")
