"""Garbage on the broker's shared queues and exchanges is logged and dropped: executors and
the scheduler keep serving, and a flow submitted afterwards succeeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.constants import EVENTS_EXCHANGE, STOP_EXCHANGE, shard_events_queue
from tests.cluster import LocalCluster, state_of
from tests.conftest import EXAMPLES, rabbitmqctl, vhost_of

GARBAGE = b"\xff\xfe not a protobuf message \x00"


@pytest.fixture
def cluster(broker_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    started = LocalCluster(broker_url, tmp_path, names=("source", "greet", "void_sink")).start()
    yield started
    started.close()


def test_garbage_on_stop_events_and_a_mailbox_leaves_the_cluster_working(
    cluster: LocalCluster,
) -> None:
    with cluster.channel() as channel:
        channel.confirm_delivery()
        for _ in range(3):
            channel.basic_publish(STOP_EXCHANGE, "", GARBAGE)
            channel.basic_publish("", shard_events_queue("0"), GARBAGE)
            channel.basic_publish(EVENTS_EXCHANGE, "job.started.0", GARBAGE)
            channel.basic_publish("", cluster.catalogue["greet"].mailbox, GARBAGE)
    record, exports = cluster.run(json.loads((EXAMPLES / "hello.json").read_text()))
    assert state_of(record) == "succeeded", record.failure.error
    assert exports["greetings"] == [{"text": f"hello name-{i}"} for i in range(3)]
    # the garbage was dropped, not left to loop in a queue
    listing = rabbitmqctl(
        "list_queues",
        "-p",
        vhost_of(cluster.amqp_url),
        "-q",
        "--no-table-headers",
        "name",
        "messages",
    )
    depths = dict(line.split() for line in listing.splitlines() if line.strip())
    assert depths[cluster.catalogue["greet"].mailbox] == "0"
