"""What a quorum mailbox costs beside a classic one, on the broker at DAGYO_QUEUE.

A mailbox carries jobs: small persistent messages, published with confirms by the scheduler
and taken one by one by executors (manual ack, prefetch = free slots). For each queue type
this publishes --jobs job-sized messages into a fresh durable mailbox (confirmed, as the
scheduler does), then consumes and acks them all with --prefetch, and deletes the queue.
Prints one JSON line per queue type and a last one with the ratios:

    {"queue_type": "classic", "jobs": 20000, "publish_per_s": …, "consume_per_s": …}
    {"queue_type": "quorum", …}
    {"quorum_over_classic": {"publish": …, "consume": …}}

Usage:
    DAGYO_QUEUE=amqp://guest:guest@localhost:5672/bench python bench/quorum_mailboxes.py
"""

from __future__ import annotations

import argparse
import uuid

import pika
from common import QUEUE_URL, emit, now

from executor.core.amqp import connect
from executor.core.constants import QueueType
from executor.core.topology import durable_arguments

# About the size of a three-node flow's job descriptor (dagyo.v1.Job).
JOB_BYTES = 400


def measure(queue_type: QueueType, jobs: int, prefetch: int) -> dict[str, object]:
    connection = connect(QUEUE_URL)
    channel = connection.channel()
    queue = f"dagyo.bench.mailbox.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True, arguments=durable_arguments(queue_type))
    channel.confirm_delivery()
    body = b"j" * JOB_BYTES
    persistent = pika.BasicProperties(delivery_mode=2)
    try:
        started = now()
        for _ in range(jobs):
            channel.basic_publish("", queue, body, persistent)
        published_s = now() - started
        channel.basic_qos(prefetch_count=prefetch)
        started = now()
        deliveries = channel.consume(queue, inactivity_timeout=30)
        for taken, (method, _, _) in enumerate(deliveries, start=1):
            if method is None:
                raise RuntimeError(f"only {taken - 1} of {jobs} jobs came back")
            channel.basic_ack(method.delivery_tag)
            if taken == jobs:
                break
        consumed_s = now() - started
        channel.cancel()
    finally:
        channel.queue_delete(queue)
        connection.close()
    return {
        "queue_type": queue_type.value,
        "jobs": jobs,
        "prefetch": prefetch,
        "publish_per_s": round(jobs / published_s),
        "consume_per_s": round(jobs / consumed_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=100, help="an executor's free slots")
    args = parser.parse_args()
    figures = {}
    for queue_type in (QueueType.CLASSIC, QueueType.QUORUM):
        figures[queue_type] = measure(queue_type, args.jobs, args.prefetch)
        emit(figures[queue_type])
    classic, quorum = figures[QueueType.CLASSIC], figures[QueueType.QUORUM]
    emit(
        {
            "quorum_over_classic": {
                what: round(quorum[f"{what}_per_s"] / classic[f"{what}_per_s"], 2)  # type: ignore[operator]
                for what in ("publish", "consume")
            }
        }
    )


if __name__ == "__main__":
    main()
