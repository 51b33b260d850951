"""Heartbeats go out from their own thread and connection, at their interval, whatever the
executor's I/O thread is doing; none is sent while the executor says it is disconnected,
and none after stop.

The heartbeats run on a virtual clock (their time moves only in their own waits), so the
test counts beats per interval of their time, with no wall-clock window.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pika

from executor._runtime.heartbeat import Heartbeats
from executor.core.amqp import AmqpThread
from executor.core.clock import VirtualClock
from executor.core.constants import EVENTS_EXCHANGE
from executor.pb.dagyo.v1.events_pb2 import Event, Heartbeat
from tests.waiting import eventually


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
    clock = VirtualClock()
    sent: list[float] = []
    beaters: set[threading.Thread] = set()
    done = threading.Event()
    release = threading.Event()

    def beat() -> Event | None:
        beaters.add(threading.current_thread())
        now = clock.monotonic()
        if now >= 2.0:
            done.set()
            return None
        if 1.0 <= now < 1.5:  # the executor says it is disconnected
            return None
        return Event(time=time.time(), heartbeat=Heartbeat(executor=executor))

    beats = Heartbeats(
        broker_url,
        routing_key=f"heartbeat.{executor}",
        interval_s=0.25,
        beat=beat,
        on_sent=lambda: sent.append(clock.monotonic()),
        clock=clock,
    )
    try:
        io.submit(lambda: release.wait(60))  # the I/O thread is stuck all along
        beats.start()
        assert done.wait(30), f"the heartbeats did not reach 2 s of their time: {sent}"
        beats.stop()
        assert sent == [0.0, 0.25, 0.5, 0.75, 1.5, 1.75]
        assert not any(thread.is_alive() for thread in beaters), "beating after stop"
        eventually(lambda: _count(connection, queue) == len(sent), what="the beats queued")
    finally:
        release.set()
        beats.stop()
        io.close()
        connection.close()


class _Said(logging.Handler):
    """Sets ``seen`` once a log line holding ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.text in line:
            self.seen.set()


def test_heartbeats_connect_and_reconnect_as_the_io_thread_does(broker_url: str) -> None:
    # Refused credentials: the error is dagyo's (BrokerRefused, saying what to do), not
    # pika's, and the attempts go on through the one reconnection loop.
    refused_url = broker_url.replace("guest:guest@", "guest:wrong@", 1)
    said = _Said("heartbeats: reconnect attempt 2 failed")
    loggers = [logging.getLogger("dagyo.amqp"), logging.getLogger("dagyo.executor.heartbeat")]
    for logger in loggers:
        logger.addHandler(said)
    beats = Heartbeats(
        refused_url,
        routing_key="heartbeat.refused",
        interval_s=0.2,
        beat=lambda: Event(time=time.time(), heartbeat=Heartbeat(executor="refused")),
        max_delay_s=0.05,
    )
    try:
        beats.start()
        assert said.seen.wait(60), said.lines
    finally:
        beats.stop()
        for logger in loggers:
            logger.removeHandler(said)
    assert said.lines[0] == "heartbeat not sent (BrokerRefused); reconnecting"
    assert said.lines[1] == (
        "heartbeats: reconnect attempt 1 failed (the user name or password was refused: "
        "check the credentials in the URL); next in 0.05 s"
    )
