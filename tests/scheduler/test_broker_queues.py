"""The scheduler's Broker creating and deleting a flow's queues on a real RabbitMQ.

A flow's queues go side by side on several channels (docs/performance.md): these tests hold
what that must keep — every queue made, every queue gone, a consumer on a deleted queue
forgotten without its flow being judged lost, and a refused delete reported.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pika
import pytest

from executor.core.constants import stream_queue
from executor.core.errors import BrokerError
from scheduler.service.broker import Broker
from tests.scheduler.fake_executor import queue_exists


@pytest.fixture
def broker(broker_url: str) -> Iterator[Broker]:
    broker = Broker(broker_url)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def flow_queues(streams: int) -> list[str]:
    flow_id = uuid.uuid4().hex[:12]
    return [stream_queue(flow_id, f"n{i}", "in") for i in range(streams)]


@pytest.mark.parametrize("streams", [1, 3, 20])
def test_a_flows_queues_are_all_made_and_all_deleted(
    broker: Broker, broker_url: str, streams: int
) -> None:
    queues = flow_queues(streams)
    broker.declare_flow_queues(queues)
    assert all(queue_exists(broker_url, q) for q in queues)

    broker.delete_queues(queues)

    # delete_queues returns once the broker has deleted every one, not just been sent them
    assert [q for q in queues if queue_exists(broker_url, q)] == []


def test_deleting_a_consumed_queue_forgets_its_consumer_without_calling_it_lost(
    broker: Broker, broker_url: str
) -> None:
    consumed, other = flow_queues(2)
    broker.declare_flow_queues([consumed, other])
    lost = threading.Event()
    broker.consume(consumed, lambda *_: None, on_cancel=lost.set)

    broker.delete_queues([consumed, other])
    # The broker's cancel of the consumer has arrived by the time a later call returns.
    broker.declare_flow_queues([consumed])
    broker.delete_queues([consumed])

    assert not lost.is_set()
    assert not queue_exists(broker_url, consumed)


def test_deleting_queues_already_gone_is_no_error(broker: Broker, broker_url: str) -> None:
    queues = flow_queues(3)
    broker.declare_flow_queues(queues[:1])

    broker.delete_queues(queues)  # two of them never existed

    assert not queue_exists(broker_url, queues[0])


def test_a_refused_delete_is_a_broker_error_and_the_next_delete_works(
    broker: Broker, broker_url: str
) -> None:
    queues = flow_queues(2)
    broker.declare_flow_queues(queues)
    # An exclusive queue of another connection: the broker refuses to let anyone delete it.
    other = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        exclusive = f"dagyo.test.exclusive.{uuid.uuid4().hex}"
        other.channel().queue_declare(exclusive, exclusive=True)
        with pytest.raises(BrokerError, match="refused"):
            broker.delete_queues([exclusive])
    finally:
        other.close()

    broker.delete_queues(queues)

    assert [q for q in queues if queue_exists(broker_url, q)] == []
