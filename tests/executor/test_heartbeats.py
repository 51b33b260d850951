"""Heartbeats go out from their own thread and connection, at their interval, whatever the
executor's I/O thread is doing; none is sent while the executor says it is disconnected,
and none after stop."""

from __future__ import annotations

import threading
import time
import uuid

import pika

from executor._runtime.heartbeat import Heartbeats
from executor.core.amqp import AmqpThread
from executor.core.constants import EVENTS_EXCHANGE
from executor.pb.dagyo.v1.events_pb2 import Event, Heartbeat


def _listen(url: str, key: str) -> tuple[pika.BlockingConnection, str]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, key)
    return connection, queue


def _count(connection: pika.BlockingConnection, queue: str) -> int:
    return int(connection.channel().queue_declare(queue, passive=True).method.message_count)


def test_heartbeats_keep_their_interval_while_the_io_thread_is_busy(broker_url: str) -> None:
    executor = f"beat-{uuid.uuid4().hex[:6]}"
    connection, queue = _listen(broker_url, f"heartbeat.{executor}")
    io = AmqpThread(broker_url, name="busy-io", on_connect=lambda _: None)
    io.start()
    sent: list[float] = []
    connected = threading.Event()
    connected.set()

    def beat() -> Event | None:
        if not connected.is_set():
            return None
        return Event(time=time.time(), heartbeat=Heartbeat(executor=executor))

    beats = Heartbeats(
        broker_url,
        routing_key=f"heartbeat.{executor}",
        interval_s=0.2,
        beat=beat,
        on_sent=lambda: sent.append(time.monotonic()),
    )
    try:
        io.submit(lambda: time.sleep(2.0))  # the I/O thread is stuck for two seconds
        beats.start()
        time.sleep(1.5)
        assert len(sent) >= 5, sent
        connected.clear()
        time.sleep(0.5)
        skipped = len(sent)
        time.sleep(0.5)
        assert len(sent) == skipped, "a heartbeat went out while disconnected"
        connected.set()
        time.sleep(0.5)
        beats.stop()
        stopped = len(sent)
        time.sleep(0.5)
        assert len(sent) == stopped, "a heartbeat went out after stop"
        assert _count(connection, queue) == stopped
    finally:
        beats.stop()
        io.close()
        connection.close()
