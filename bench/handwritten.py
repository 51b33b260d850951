"""The hand-written baseline: source -> greet -> count as three processes, raw pika.

What a user could do by hand on the same broker, with no dagyo: protobuf items
(dagyo.types.Text / Int64 wire format) batched many per AMQP message with a length
prefix, bounded queues, publisher confirms (as dagyo uses) unless --no-confirms.

Prints one JSON line: {"items": N, "seconds": …, "items_per_s": …, "confirms": …}.

Usage:
    python bench/handwritten.py --items 300000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import struct
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pika  # noqa: E402

from executor.core.amqp import connect  # noqa: E402
from executor.pb.dagyo.types_pb2 import Int64, Text  # noqa: E402

BATCH_ITEMS = 8192
BATCH_BYTES = 128 * 1024
QUEUE_ARGUMENTS = {"x-max-length": 16, "x-overflow": "reject-publish"}


def pack(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def unpack(body: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(body):
        (size,) = struct.unpack_from("<I", body, offset)
        offset += 4
        items.append(body[offset : offset + size])
        offset += size
    return items


class Publisher:
    def __init__(
        self, channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, confirms: bool
    ) -> None:
        self.channel, self.queue, self.confirms = channel, queue, confirms
        if confirms:
            channel.confirm_delivery()
        self.items: list[bytes] = []
        self.size = 0

    def send(self, item: bytes) -> None:
        self.items.append(item)
        self.size += len(item)
        if len(self.items) >= BATCH_ITEMS or self.size >= BATCH_BYTES:
            self.flush()

    def flush(self, end: bool = False) -> None:
        body = pack(self.items)
        headers = {"end": True} if end else None
        while True:
            try:
                self.channel.basic_publish(
                    "", self.queue, body, pika.BasicProperties(headers=headers)
                )
                break
            except pika.exceptions.NackError:  # the bounded queue is full: wait, retry
                time.sleep(0.001)
        self.items, self.size = [], 0


def source(url: str, out: str, n: int, confirms: bool) -> None:
    connection = connect(url)
    publisher = Publisher(connection.channel(), out, confirms)
    for i in range(n):
        publisher.send(Text(text=f"name-{i}").SerializeToString())
    publisher.flush(end=True)
    connection.close()


def greet(url: str, inp: str, out: str, confirms: bool) -> None:
    connection = connect(url)
    channel = connection.channel()
    publisher = Publisher(connection.channel(), out, confirms)
    channel.basic_qos(prefetch_count=4)
    for method, properties, body in channel.consume(inp):
        for data in unpack(body):
            publisher.send(Text(text="hello " + Text.FromString(data).text).SerializeToString())
        channel.basic_ack(method.delivery_tag)
        if properties.headers and properties.headers.get("end"):
            break
    publisher.flush(end=True)
    connection.close()


def count(url: str, inp: str, result: multiprocessing.Queue) -> None:
    connection = connect(url)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=4)
    total = 0
    for method, properties, body in channel.consume(inp):
        total += len([Text.FromString(d) for d in unpack(body)])
        channel.basic_ack(method.delivery_tag)
        if properties.headers and properties.headers.get("end"):
            break
    result.put(Int64(value=total).value)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument(
        "--no-confirms",
        action="store_true",
        help="publish without confirms (faster, and unsafe: no backpressure)",
    )
    args = parser.parse_args()
    url = os.environ.get("DAGYO_QUEUE", "amqp://guest:guest@localhost:5672/%2F")
    confirms = not args.no_confirms
    prefix = f"bench.handwritten.{uuid.uuid4().hex[:8]}"
    q1, q2 = f"{prefix}.names", f"{prefix}.greetings"
    connection = connect(url)
    channel = connection.channel()
    arguments = QUEUE_ARGUMENTS if confirms else None
    for queue in (q1, q2):
        channel.queue_declare(queue, arguments=arguments)
    result: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=count, args=(url, q2, result)),
        multiprocessing.Process(target=greet, args=(url, q1, q2, confirms)),
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # let the consumers connect: measure streaming, not start-up
    started = time.perf_counter()
    producer = multiprocessing.Process(target=source, args=(url, q1, args.items, confirms))
    producer.start()
    total = result.get(timeout=600)
    seconds = time.perf_counter() - started
    for process in [producer, *processes]:
        process.join()
    for queue in (q1, q2):
        channel.queue_delete(queue)
    connection.close()
    assert total == args.items, f"counted {total} of {args.items} items"
    print(
        json.dumps(
            {
                "bench": "handwritten",
                "items": args.items,
                "seconds": round(seconds, 3),
                "items_per_s": round(args.items / seconds),
                "confirms": confirms,
            }
        )
    )


if __name__ == "__main__":
    main()
