"""A job's AMQP channel, on a real RabbitMQ: handed to the next job when it is clean, closed
when it is not, and never left open behind a job.

Opening a channel costs three round trips and a process in the broker; a long-lived
executor running jobs one after another must not pay that per job, nor grow its channels
when flows end under its jobs (RabbitMQ allows 2047 per connection).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from executor._runtime.inbox import Inbox
from executor._runtime.transport.rabbitmq import (
    CHANNELS_KEPT,
    ChannelPool,
    JobStreams,
    RabbitTransport,
)
from executor.core.amqp import AmqpThread
from executor.core.errors import Stopped
from executor.core.topology import stream_arguments
from tests.conftest import rabbitmqctl, vhost_of
from tests.waiting import eventually

JOBS = 12


@pytest.fixture
def pool(broker_url: str) -> Iterator[ChannelPool]:
    io = AmqpThread(broker_url, name=f"reuse-{uuid.uuid4().hex[:6]}", on_connect=lambda _: None)
    io.start()
    try:
        yield ChannelPool(io, ready=0, prefetch_frames=2)
    finally:
        io.close()


@pytest.fixture
def admin(broker_url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    try:
        yield channel
    finally:
        connection.close()


def stream(admin: BlockingChannel, frames: int = 0) -> str:
    queue = f"dagyo.flow.reuse-{uuid.uuid4().hex[:8]}.in.node.port"
    admin.queue_declare(queue, arguments=stream_arguments(8))
    for i in range(frames):
        admin.basic_publish("", queue, b"frame-%d" % i)
    return queue


def depth(admin: BlockingChannel, queue: str) -> int:
    return int(admin.queue_declare(queue, passive=True).method.message_count)


def channels_open(url: str) -> int:
    out = rabbitmqctl(
        "list_connections", "-p", vhost_of(url), "-q", "--no-table-headers", "channels"
    )
    return sum(int(n) for n in out.split())


def read_all(pool: ChannelPool, queue: str, frames: int) -> None:
    """One job: consume ``queue``, take every frame (each acked), stop consuming, close."""
    stop = threading.Event()
    inbox = Inbox(stop)
    inbox.add_port("in")
    streams = RabbitTransport(pool).open(stop=stop)
    streams.attach(queue, inbox, "in")
    assert [inbox.take("in") for _ in range(frames)] == [b"frame-%d" % i for i in range(frames)]
    streams.detach(queue)
    streams.close()


def test_jobs_one_after_another_share_one_channel(
    pool: ChannelPool, admin: BlockingChannel
) -> None:
    queues = [stream(admin, 3) for _ in range(JOBS)]
    try:
        for queue in queues:
            read_all(pool, queue, 3)
        assert pool.opened == 1
        assert [depth(admin, q) for q in queues] == [0] * JOBS  # every frame acked
    finally:
        for queue in queues:
            admin.queue_delete(queue)


def test_a_job_ending_with_frames_untaken_closes_its_channel_and_they_go_back(
    pool: ChannelPool, admin: BlockingChannel
) -> None:
    queue = stream(admin, 3)
    try:
        stop = threading.Event()
        inbox = Inbox(stop)
        inbox.add_port("in")
        streams = RabbitTransport(pool).open(stop=stop)
        streams.attach(queue, inbox, "in")
        assert inbox.take("in") == b"frame-0"  # frame-1 is delivered too (prefetch 2), not taken
        eventually(lambda: depth(admin, queue) <= 1, what="frame-1 delivered")
        streams.close()

        # frame-1 back in the queue, frame-2 never left
        eventually(lambda: depth(admin, queue) == 2, what="two frames in the queue")
        read_all(pool, queue, 0)
        assert pool.opened == 2  # the next job did not get the unclean channel
    finally:
        admin.queue_delete(queue)


def test_jobs_whose_streams_are_gone_leave_no_channel_open(
    pool: ChannelPool, broker_url: str
) -> None:
    before = channels_open(broker_url)
    for _ in range(JOBS):
        streams: JobStreams = RabbitTransport(pool).open(stop=threading.Event())
        with pytest.raises(Stopped, match="is gone"):
            streams.publish([f"dagyo.flow.gone-{uuid.uuid4().hex[:8]}.in.n.p"], b"frame")
        streams.close()

    assert channels_open(broker_url) - before <= 1
    assert CHANNELS_KEPT >= 1
