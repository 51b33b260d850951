"""What each AMQP operation a flow makes costs the broker: CPU of the RabbitMQ node per call.

On a vhost of its own (made and deleted with rabbitmqctl), one pika connection runs each
operation --ops times in a row and reads the CPU time of the local RabbitMQ node
(``beam.smp``, from /proc) around it; the node's CPU over a quiet second just before is
taken off at its rate, since other clients of the same node go on meanwhile. The median of
--repeat runs (others' traffic comes and goes, so a run may take off too much as well as too
little). Prints one JSON line, milliseconds of broker CPU per operation:

    {"ms_per_op": {"queue_declare_delete": …, "consume_cancel": …, …}, "load": […]}

Usage:
    python bench/broker_costs.py --ops 300
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.parse
import uuid
from collections.abc import Callable

import pika
from common import QUEUE_URL, broker_nodes, cpu_seconds, emit, load_average

from executor.core.connection import connect


def rabbitmqctl(node: str, *args: str) -> None:
    import subprocess

    where = ["-n", node] if node else []
    subprocess.run(
        ["rabbitmqctl", *where, "-q", *args], check=True, capture_output=True, timeout=120
    )


def operations(channel: pika.adapters.blocking_connection.BlockingChannel) -> dict[str, Callable]:
    """name -> one call of the operation (each leaves nothing behind)."""
    target = channel.queue_declare("costs.target", arguments={"x-max-length": 100000}).method
    confirmed = channel.connection.channel()
    confirmed.confirm_delivery()
    channel.exchange_declare("costs.topic", "topic")
    names = (f"costs.q.{i}" for i in range(10**9))
    body = b"x" * 200

    def declare_delete() -> None:
        name = next(names)
        channel.queue_declare(name, arguments={"x-max-length": 16})
        channel.queue_delete(name)

    channel.queue_declare("costs.reused", arguments={"x-max-length": 16})

    def purge() -> None:  # what handing an ended flow's queue to the next flow would cost
        channel.queue_purge("costs.reused")

    def bind_unbind() -> None:
        channel.queue_bind(target.queue, "costs.topic", "k")
        channel.queue_unbind(target.queue, "costs.topic", "k")

    def consume_cancel() -> None:
        tag = channel.basic_consume(target.queue, lambda *_: None)
        channel.basic_cancel(tag)

    def channel_open_close() -> None:
        channel.connection.channel().close()

    def publish_confirmed() -> None:
        confirmed.basic_publish("", target.queue, body)

    def get_ack() -> None:
        method, _, _ = channel.basic_get(target.queue)
        assert method is not None
        channel.basic_ack(method.delivery_tag)

    def publish_unconfirmed() -> None:
        channel.basic_publish("", target.queue, body)

    # publish_confirmed fills the queue get_ack empties; publish_unconfirmed's are purged
    return {
        "queue_declare_delete": declare_delete,
        "queue_purge": purge,
        "bind_unbind": bind_unbind,
        "consume_cancel": consume_cancel,
        "channel_open_close": channel_open_close,
        "publish_confirmed": publish_confirmed,
        "get_ack": get_ack,
        "publish_unconfirmed": publish_unconfirmed,
    }


def broker_rate(connection: pika.BlockingConnection, broker: int) -> float:
    """The broker's CPU seconds per second over a quiet second: what others cost it."""
    started, cpu = time.perf_counter(), cpu_seconds(broker)
    connection.sleep(1.0)
    return (cpu_seconds(broker) - cpu) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    nodes = broker_nodes()
    if not nodes:
        raise SystemExit("bench/broker_costs.py reads the CPU of a RabbitMQ node on this machine")
    broker, node = nodes[0]  # the first node DAGYO_QUEUE names, where its queues live
    loads = [load_average()]
    vhost = f"dagyo-bench-costs-{uuid.uuid4().hex[:8]}"
    parts = urllib.parse.urlsplit(QUEUE_URL.split(";")[0])
    rabbitmqctl(node, "add_vhost", vhost)
    runs: dict[str, list[float]] = {}
    try:
        user = parts.username or "guest"
        rabbitmqctl(node, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        url = urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, "")))
        connection = connect(url)
        channel = connection.channel()
        ops = operations(channel)
        for _ in range(args.repeat):
            for name, op in ops.items():
                quiet_started, quiet_cpu = time.perf_counter(), cpu_seconds(broker)
                connection.sleep(0.3)
                quiet_rate = (cpu_seconds(broker) - quiet_cpu) / (
                    time.perf_counter() - quiet_started
                )
                started, cpu = time.perf_counter(), cpu_seconds(broker)
                for _ in range(args.ops):
                    op()
                channel.queue_declare("costs.target", passive=True)  # all of them handled
                used = cpu_seconds(broker) - cpu - quiet_rate * (time.perf_counter() - started)
                runs.setdefault(name, []).append(used * 1000 / args.ops)
            channel.queue_purge("costs.target")
        connection.close()
    finally:
        rabbitmqctl(node, "delete_vhost", vhost)
    loads.append(load_average())
    emit(
        {
            "bench": "broker_costs",
            "ops": args.ops,
            "ms_per_op": {name: round(statistics.median(ms), 3) for name, ms in runs.items()},
            "load": loads,
        }
    )


if __name__ == "__main__":
    main()
