"""A client-side connection error (no free channel) closes the connection before the I/O
thread reconnects, so the new connection can declare its exclusive queues again."""

from __future__ import annotations

import uuid
from typing import Any

import pika
import pika.exceptions

from executor.core.amqp import AmqpThread
from tests.waiting import eventually


def test_a_connection_out_of_channels_is_closed_and_replaced(broker_url: str) -> None:
    queue = f"dagyo-test-exclusive-{uuid.uuid4().hex[:8]}"
    connects: list[Any] = []

    def on_connect(connection: pika.BlockingConnection) -> None:
        connection.channel().queue_declare(queue, exclusive=True, auto_delete=True)
        connects.append(connection)

    io = AmqpThread(broker_url, name="test-io", on_connect=on_connect, reconnect_delay_s=0.1)
    io.start()
    try:
        first = connects[0]

        def out_of_channels() -> None:
            raise pika.exceptions.NoFreeChannels()

        io.submit(out_of_channels)
        eventually(
            lambda: len(connects) >= 2 and io.connected.is_set(),
            what="the I/O thread reconnected",
        )
        assert not first.is_open, "the old connection was left open"
        assert io.alive
    finally:
        io.close()
