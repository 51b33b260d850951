"""Replaying a cached output stream into a flow: the scheduler acting as the producer.

A cached node is not run; the scheduler sends its cached output streams where its job would
have sent them (docs/cache.md, docs/protocol.md "Cached nodes"): to each consumer's stream
queue and each export queue of the output, in frames as a producer makes them (at most
FRAME_MAX_ITEMS items and about FRAME_MAX_BYTES each, ``seq`` from 0, the output's typename
and producer token, an explicit end-of-stream frame). It publishes through the executor's
own RabbitMQ transport, on a connection of its own: confirms, ``mandatory``, and a full
stream (``reject-publish``) waited for and published to again, so a replay respects the
streams' bounds as a producer does.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pika

from executor._runtime.transport.rabbitmq import ChannelPool, RabbitTransport
from executor.core.amqp import AmqpThread
from executor.core.constants import FRAME_MAX_BYTES, FRAME_MAX_ITEMS
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Output

_LENGTH = struct.Struct(">I")


def cached_items(data: bytes) -> Iterator[bytes]:
    """The items of a cached stream (each a 4-byte big-endian length and its bytes)."""
    view, position = memoryview(data), 0
    while position < len(view):
        (length,) = _LENGTH.unpack_from(view, position)
        position += _LENGTH.size
        yield bytes(view[position : position + length])
        position += length


def frames(data: bytes, *, typename: str, token: str) -> Iterator[bytes]:
    """A cached stream as the serialized frames a producer sends, the last one ending it."""
    items: list[bytes] = []
    size = seq = 0
    for item in cached_items(data):
        if items and (len(items) >= FRAME_MAX_ITEMS or size + len(item) > FRAME_MAX_BYTES):
            yield Frame(items=items, seq=seq, typename=typename, token=token).SerializeToString()
            items, size, seq = [], 0, seq + 1
        items.append(item)
        size += len(item)
    yield Frame(
        items=items, seq=seq, typename=typename, token=token, end_of_stream=True
    ).SerializeToString()


class Replayer:
    """Sends cached streams to a flow's queues, on a connection opened at the first replay.

    Args:
        url: the broker (``DAGYO_QUEUE``).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._io: AmqpThread | None = None
        self._transport: RabbitTransport | None = None

    def send(self, output: Output, data: bytes, *, stop: threading.Event) -> int:
        """Send one cached output stream to every queue of ``output``; return its items.

        Raises:
            Stopped: ``stop`` was set while a stream was full, or a queue is gone (the flow
                ended).
            BrokerUnavailable: the broker cannot be reached.
        """
        streams = self._connect().open(stop=stop)
        sent = 0
        try:
            sink = streams.sink(list(output.queues))
            for frame in frames(data, typename=output.typename, token=output.token):
                sink.send(frame)
            sent = sum(1 for _ in cached_items(data))
        finally:
            streams.close()
        return sent

    def _connect(self) -> RabbitTransport:
        with self._lock:
            if self._transport is None or self._io is None or not self._io.alive:
                pool: ChannelPool | None = None

                def connected(connection: pika.BlockingConnection) -> None:
                    if pool is not None:
                        pool.clear()  # channels of a connection that is gone

                io = AmqpThread(self._url, name="dagyo-cache-replay", on_connect=connected)
                io.start()
                pool = ChannelPool(io, ready=0)
                self._io, self._transport = io, RabbitTransport(pool)
            return self._transport

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._io is not None:
                self._io.close()
            self._io = self._transport = None
