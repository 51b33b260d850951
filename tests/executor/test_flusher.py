"""The process-wide flusher outlives one job's trouble: a flow cancelled mid-stream (its
queues deleted under a lingering frame) leaves the next flow's items flushing on time."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pika
import pytest

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.stream import FrameWriter, StreamSettings
from executor._runtime.transport.rabbitmq import ChannelPool, RabbitTransport
from executor.core.amqp import AmqpThread
from executor.core.topology import stream_arguments
from executor.pb.dagyo.types_pb2 import Text

LINGER_S = 0.05


@pytest.fixture
def rabbit(broker_url: str) -> Iterator[tuple[RabbitTransport, pika.channel.Channel]]:
    io = AmqpThread(broker_url, name="flusher-io", on_connect=lambda _: None)
    io.start()
    admin = pika.BlockingConnection(pika.URLParameters(broker_url))
    yield RabbitTransport(ChannelPool(io, ready=0)), admin.channel()
    admin.close()
    io.close()


def writer_to(
    transport: RabbitTransport, queue: str, flusher: Flusher, stop: threading.Event
) -> FrameWriter:
    return FrameWriter(
        transport.open(stop=stop).sink([queue]),
        settings=StreamSettings(linger_s=LINGER_S),
        flusher=flusher,
        typename="dagyo.types.Text",
    )


def test_a_cancelled_flow_leaves_the_next_flows_items_flushing_within_the_linger(
    rabbit: tuple[RabbitTransport, pika.channel.Channel],
) -> None:
    transport, admin = rabbit
    flusher = Flusher(linger_s=LINGER_S)
    first, second = (f"dagyo.flow.{uuid.uuid4().hex[:12]}.in.n.items" for _ in range(2))
    for queue in (first, second):
        admin.queue_declare(queue, arguments=stream_arguments())
    try:
        cancelled_stop = threading.Event()
        cancelled = writer_to(transport, first, flusher, cancelled_stop)
        admin.queue_delete(first)  # the flow was cancelled: its queues are gone
        cancelled.add(Text(text="held"))
        # The flusher's flush of the held item finds the queue gone and stops that job.
        assert cancelled_stop.wait(5.0), "the flusher never tried the cancelled flow's frame"

        stop = threading.Event()
        inbox = Inbox(stop)
        inbox.add_port("in")
        transport.open(stop=stop).attach(second, inbox, "in")
        writer = writer_to(transport, second, flusher, threading.Event())
        writer.add(Text(text="next flow"))
        got: list[bytes] = []
        taker = threading.Thread(target=lambda: got.append(inbox.take("in")), daemon=True)
        taker.start()
        taker.join(5.0)  # the linger is 0.05 s: 5 s only catches a flusher that is gone
        stop.set()
        inbox.wake()
        assert got, "the next flow's item was not flushed: the flusher thread died"
    finally:
        admin.queue_delete(second)
        flusher.close()
