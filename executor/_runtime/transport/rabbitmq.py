"""The RabbitMQ transport: streams as bounded queues, frames published with confirms.

:meth:`RabbitTransport.open` gives each job :class:`JobStreams` with one channel of its own
on the executor's connection (opened and used only on the I/O thread). Why each setting is
what it is:

* publisher confirms + ``mandatory``: a frame counts as sent only when the broker has it;
  a nack means the stream is full (its queue has ``x-overflow: reject-publish``), a return
  means the queue is gone (the flow ended);
* one frame in flight per queue: a nacked frame is published again before the next, so
  order holds without sequence games on the consumer side;
* consumer prefetch STREAM_PREFETCH_FRAMES with acks when the job *takes* a frame: the
  executor never holds more than a few frames per input, so the bound stays in the broker;
* a job's channel goes back to the :class:`ChannelPool` when the job ends clean (every
  frame delivered to it taken and acked, its consumers cancelled), for the next job: a
  channel costs three round trips to set up and a process in the broker. One that holds
  unacked frames is closed instead, which returns them to their queues.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from executor._runtime.inbox import Inbox
from executor.core.amqp import AmqpThread
from executor.core.constants import (
    CHANNELS_READY,
    FULL_STREAM_BACKOFF_MAX_S,
    FULL_STREAM_BACKOFF_S,
    PROTOBUF_CONTENT_TYPE,
    STREAM_PREFETCH_FRAMES,
)
from executor.core.errors import BrokerError, Stopped
from executor.core.frames import StreamFrame

FRAME_PROPERTIES = pika.BasicProperties(content_type=PROTOBUF_CONTENT_TYPE, type="dagyo.v1.Frame")


class RabbitTransport:
    """Streams on the executor's connections, each job on a channel of its own.

    Args:
        channels: where a job's channel comes from: the pool of the executor's connection,
            or :class:`~executor._runtime.transport.spread.SpreadPools` over as many
            connections as its jobs need.
    """

    def __init__(self, channels: ChannelPool | Pools) -> None:
        self.channels = channels

    def open(self, *, stop: threading.Event) -> JobStreams:
        """Return the streams of one job; its channel is taken on first use."""
        pools = self.channels
        if isinstance(pools, ChannelPool):
            return JobStreams(pools, stop=stop)
        pool = pools.take(stop)
        return JobStreams(pool, stop=stop, release=lambda: pools.release(pool, stop))


class Pools(Protocol):
    """Channel pools on several connections: which one a job's channel comes from."""

    def take(self, stop: threading.Event) -> ChannelPool:
        """The pool of a connection with a channel to spare for the job stopped by ``stop``."""
        ...

    def release(self, pool: ChannelPool, stop: threading.Event) -> None:
        """The job ended: its channel on ``pool``'s connection is spare again."""
        ...


class JobStreams:
    """The streams of one job on the executor's connection.

    Args:
        channels: the pool the job's channel is taken from.
        stop: the job's stop signal; set here too when a stream turns out to be gone.
    """

    __slots__ = ("_channel", "_consumers", "_io", "_pool", "_release", "_stop", "_unacked")

    def __init__(
        self,
        channels: ChannelPool,
        *,
        stop: threading.Event,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._io = channels.io
        self._stop = stop
        self._pool = channels
        self._release = release
        self._channel: BlockingChannel | None = None
        self._consumers: dict[str, str] = {}
        self._unacked = 0  # frames delivered to the job and not acked yet (I/O thread)

    def _open(self) -> BlockingChannel:
        """Return the job's channel, taking one on first use (I/O thread only)."""
        if self._channel is None or not self._channel.is_open:
            self._channel = self._pool.take()
        return self._channel

    def attach(self, queue: str, inbox: Inbox, port: str) -> None:
        """Consume ``queue`` into ``inbox``; a frame is acked when the job takes it.

        Raises:
            Stopped: when the queue does not exist (its flow has ended).
        """

        def consume() -> None:
            channel = self._open()

            def on_frame(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
                tag = method.delivery_tag
                self._unacked += 1
                inbox.put(port, body, on_taken=lambda: self._ack(ch, tag))

            self._consumers[queue] = channel.basic_consume(queue, on_frame, auto_ack=False)

        self._call_or_stop(consume, queue)

    def _ack(self, channel: BlockingChannel, tag: int) -> None:
        def ack() -> None:
            if channel.is_open:
                channel.basic_ack(tag)
                self._unacked -= 1

        self._io.submit(ack)

    def detach(self, queue: str) -> None:
        """Stop consuming ``queue``; frames sent from now on wait in it.

        Frames already delivered and not taken stay unacked until the job's channel
        closes, which returns them to the queue.
        """
        tag = self._consumers.pop(queue, None)
        if tag is None:
            return

        def cancel() -> None:
            if self._channel is not None and self._channel.is_open:
                self._channel.basic_cancel(tag)

        try:
            self._io.call(cancel)
        except BrokerError:
            pass  # the connection is gone, and the consumer with it

    def sink(self, queues: Sequence[str]) -> RabbitSink:
        """Return a sink that publishes every frame to each of ``queues``."""
        return RabbitSink(self, tuple(queues), self._stop)

    def publish(self, queues: Sequence[str], frame: bytes) -> list[str]:
        """Publish one frame to each queue; return the queues that were full.

        Raises:
            Stopped: when a queue no longer exists.
        """

        def publish_all() -> list[str]:
            channel = self._open()
            full = []
            for queue in queues:
                try:
                    channel.basic_publish("", queue, frame, FRAME_PROPERTIES, mandatory=True)
                except pika.exceptions.NackError:
                    full.append(queue)
            return full

        return self._call_or_stop(publish_all, ", ".join(queues))

    def _call_or_stop(self, function: Any, queue: str) -> Any:
        try:
            return self._io.call(function)
        except (pika.exceptions.UnroutableError, pika.exceptions.ChannelClosedByBroker) as e:
            # A return leaves the channel open (close() deals with it); a 404 closed it.
            self._stop.set()
            raise Stopped(f"stream queue {queue} is gone: the flow has ended") from e
        except BrokerError as e:
            self._stop.set()
            raise Stopped(f"lost the broker connection: {e}") from e

    def close(self) -> None:
        """End the job's streams: its channel goes back to the pool when clean, else it is
        closed (consumers end and unacked frames return to their queues)."""
        tags = list(self._consumers.values())
        self._consumers.clear()

        def close() -> None:
            channel, self._channel = self._channel, None
            if channel is None or not channel.is_open:
                return
            if self._unacked:
                channel.close()
                return
            live = set(channel.consumer_tags)  # not those the broker cancelled (queue gone)
            for tag in tags:  # frames delivered meanwhile are rejected back to the queue
                if tag in live:
                    channel.basic_cancel(tag)
            if self._unacked or not channel.is_open:
                if channel.is_open:
                    channel.close()
                return
            self._pool.give_back(channel)

        try:
            self._io.call(close)
        except Exception:  # the connection is already gone
            pass
        release, self._release = self._release, None
        if release is not None:
            release()


REFILL_DELAY_S = 0.05
# Clean channels kept for the next jobs, besides the ``ready`` ones: enough for jobs that
# come and go steadily; a burst's channels beyond it are closed as its jobs end.
CHANNELS_KEPT = 32


class ChannelPool:
    """Channels set up for jobs: open, in confirm mode, with the stream prefetch.

    Used on the I/O thread only. A little after each take the pool is filled again, so a
    job starts without the three round trips of opening and setting up its channel.

    Args:
        io: the I/O thread of the connection the channels are on.
        ready: how many channels to keep ready.
        prefetch_frames: how many frames a job's consumer takes ahead of the job.
    """

    def __init__(
        self,
        io: AmqpThread,
        *,
        ready: int = CHANNELS_READY,
        prefetch_frames: int = STREAM_PREFETCH_FRAMES,
    ) -> None:
        self.io = io
        self._wanted = ready
        self._prefetch = prefetch_frames
        self._ready: list[BlockingChannel] = []
        self.opened = 0  # channels opened so far (each costs three round trips)

    @property
    def wanted(self) -> int:
        """How many channels it keeps ready."""
        return self._wanted

    def take(self) -> BlockingChannel:
        """A channel set up for a job: a ready one, else a new one."""
        while self._ready:
            channel = self._ready.pop()
            if channel.is_open:
                break
        else:
            channel = self._open()
        if self._wanted:
            # Later, not now: the job that took this channel has its own work queued next.
            self.io.connection().call_later(REFILL_DELAY_S, self.fill)
        return channel

    def fill(self) -> None:
        """Open channels until ``ready`` are ready (nothing while disconnected)."""
        if not self.io.connected.is_set():
            return
        self._ready = [channel for channel in self._ready if channel.is_open]
        while len(self._ready) < self._wanted:
            self._ready.append(self._open())

    def give_back(self, channel: BlockingChannel) -> None:
        """Keep a job's clean channel (open, no consumer, nothing unacked) for the next job."""
        if channel.is_open and len(self._ready) < self._wanted + CHANNELS_KEPT:
            self._ready.append(channel)
        elif channel.is_open:
            channel.close()

    def clear(self) -> None:
        """Forget the ready channels: the connection they were on is gone."""
        self._ready = []

    def _open(self) -> BlockingChannel:
        self.opened += 1
        channel = self.io.connection().channel()
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=self._prefetch)
        return channel


class RabbitSink:
    """Publishes an output's frames to its stream queues, waiting while one is full."""

    def __init__(
        self, transport: JobStreams, queues: tuple[str, ...], stop: threading.Event
    ) -> None:
        self._transport = transport
        self._queues = queues
        self._stop = stop

    def send(self, frame: StreamFrame, *, block: bool = True) -> bool:
        """Publish the frame to every queue, retrying the full ones (see FrameSink.send).

        Raises:
            Stopped: when the job is stopped while waiting, or a queue is gone.
            TypeError: for a MessageFrame, which only crosses an edge within one process.
        """
        if not isinstance(frame, bytes):
            raise TypeError(
                "the rabbitmq transport carries serialized frames only: run jobs on it with "
                "StreamSettings(frames=FrameForm.BYTES)"
            )
        pending: Sequence[str] = self._queues
        delay = FULL_STREAM_BACKOFF_S
        first = True
        while pending:
            full = self._transport.publish(pending, frame)
            if first and not block and len(full) == len(pending):
                return False
            first = False
            pending = full
            if pending:
                if self._stop.wait(delay):
                    raise Stopped("the flow was stopped")
                delay = min(delay * 2, FULL_STREAM_BACKOFF_MAX_S)
        return True

    def close(self) -> None:
        """Nothing to release: every frame was confirmed when send returned."""
