"""Heartbeats on a thread and a connection of their own.

The executor's I/O thread carries all of its jobs' stream work; a burst of it (thousands
of jobs opening and closing their channels at once) used to hold back the heartbeat
timer on that thread past the scheduler's timeout, and the scheduler then failed running
flows as LOST although the executor was well. :class:`Heartbeats` publishes instead from
its own thread on its own connection, so nothing the jobs do can delay it; it connects as
the I/O thread does (:func:`executor.core.amqp.connect`) and reconnects through the same
loop (:func:`executor.core.amqp.reconnect`) for as long as the executor runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.amqp import CONNECTION_ERRORS, connect, reconnect
from executor.core.clock import SYSTEM_CLOCK, Clock
from executor.core.connection import connection_parameters
from executor.core.constants import (
    EVENTS_EXCHANGE,
    PROTOBUF_CONTENT_TYPE,
    RECONNECT_DELAY_S,
)
from executor.core.errors import BrokerError
from executor.core.settings import reconnect_max_delay_s
from executor.pb.dagyo.v1.events_pb2 import Event

log = logging.getLogger("dagyo.executor.heartbeat")

PROPERTIES = pika.BasicProperties(
    content_type=PROTOBUF_CONTENT_TYPE, type=Event.DESCRIPTOR.full_name
)


class Heartbeats:
    """Publishes ``beat()`` to the events exchange every ``interval_s``, from its own thread.

    Args:
        url: the broker.
        routing_key: ``heartbeat.{executor}``.
        beat: builds the event to send now; None skips this beat (e.g. while the
            executor's own connection is down and it pulls nothing).
        on_sent: called after each heartbeat went out.
        max_delay_s: the longest wait between reconnection attempts (None:
            DAGYO_RECONNECT_MAX_DELAY_S, else RECONNECT_MAX_DELAY_S).
        clock: paces the beats (tests give a virtual one).
    """

    def __init__(
        self,
        url: str,
        *,
        routing_key: str,
        interval_s: float,
        beat: Callable[[], Event | None],
        on_sent: Callable[[], None] = lambda: None,
        max_delay_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        connection_parameters(url)  # a bad URL is said now, not at the first beat
        self._url = url
        self._key = routing_key
        self._interval_s = interval_s
        self._beat = beat
        self._on_sent = on_sent
        self._max_delay_s = reconnect_max_delay_s() if max_delay_s is None else max_delay_s
        self._clock = clock
        self._stop = threading.Event()
        self._kick = threading.Event()  # set to beat at once
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._thread = threading.Thread(target=self._main, name="dagyo-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating (the first heartbeat goes out at once)."""
        self._thread.start()

    def now(self) -> None:
        """Send a heartbeat now, not at the next interval (the executor just connected)."""
        self._kick.set()

    def stop(self) -> None:
        """Stop beating and close the connection (idempotent)."""
        self._stop.set()
        self._kick.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self._interval_s + 5)

    def _main(self) -> None:
        wait = 0.0
        while True:
            self._clock.wait(self._kick, wait)
            self._kick.clear()
            if self._stop.is_set():
                break
            wait = self._interval_s
            try:
                self._send()
            except (BrokerError, *CONNECTION_ERRORS, pika.exceptions.AMQPError) as e:
                self._close()
                log.warning("heartbeat not sent (%s); reconnecting", type(e).__name__)
                self._connection = reconnect(
                    self._url,
                    closing=self._stop,
                    delay_s=min(RECONNECT_DELAY_S, self._max_delay_s),
                    max_delay_s=self._max_delay_s,
                    label="heartbeats: ",
                )
                wait = 0.0  # the beat that failed goes out at once
            except Exception:  # a bug building one beat must not silence every later one
                log.exception("heartbeat not sent")
        self._close()

    def _send(self) -> None:
        event = self._beat()
        if event is None:
            return
        if self._connection is None or not self._connection.is_open:
            self._connection = connect(self._url)
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
        self._channel.basic_publish(
            EVENTS_EXCHANGE, self._key, event.SerializeToString(), PROPERTIES
        )
        # Answers the broker's AMQP heartbeats and flushes the publish.
        self._connection.process_data_events(time_limit=0)
        self._on_sent()

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a broken connection: nothing left to do
                pass
