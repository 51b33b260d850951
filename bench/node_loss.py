"""How long a broker node's loss keeps new flows from running, on three loopback nodes.

Starts the three private RabbitMQ nodes of the tests (tests/broker_cluster.py: ports 5701–5703,
so it needs rabbitmq-server and root, as the tests do) and a local cluster on all three URLs.
Then, --stops times over, stops one node (each in turn), submits a hello flow at once and
again until one succeeds, and starts the node again. Prints one JSON line:

    {"stops": 10, "first_success_s": {"p50": …, "max": …}, "seconds": [...]}

where a figure is the time from the node's stop to the end of the first hello flow that
succeeded after it.

Usage:
    python bench/node_loss.py --stops 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import ROOT, emit, hello_flow, now

from scheduler.client.api import SchedulerClient
from scheduler.local_cluster import LocalCluster, private_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2
from tests.broker_cluster import running_cluster
from tests.waiting import eventually


def run_hello(client: SchedulerClient, flow: str) -> bool:
    """Submit a hello flow and wait for its end: True when it succeeded."""
    try:
        flow_id = client.submit(flow, source="hello.json")
        record = eventually(
            lambda: client.get(flow_id),
            60,
            until=lambda r: (
                r.state not in (scheduler_pb2.FLOW_STATE_PENDING, scheduler_pb2.FLOW_STATE_RUNNING)
            ),
        )
    except Exception:  # refused while the scheduler reconnects: try again
        return False
    return bool(record.state == scheduler_pb2.FLOW_STATE_SUCCEEDED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=10)
    args = parser.parse_args()
    seconds: list[float] = []
    with running_cluster() as brokers:
        catalogue = Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "progdefs"
        names = ("source", "greet", "void_sink")
        private_catalogue(ROOT / "progdefs", catalogue, names, tag="bench")
        cluster = LocalCluster(progdefs_dir=catalogue, queue_url=brokers.url())
        cluster.start()
        flow = json.dumps(hello_flow())
        try:
            with SchedulerClient(cluster.address) as client:
                assert run_hello(client, flow), "a hello flow fails before any stop"
                for stop in range(args.stops):
                    index = stop % len(brokers.nodes)
                    stopped = now()
                    brokers.stop_node(index)
                    try:
                        while not run_hello(client, flow):
                            pass
                        seconds.append(round(now() - stopped, 2))
                    finally:
                        brokers.start_node(index)
                    eventually(lambda: len(brokers.running()) == len(brokers.nodes), 60)
        finally:
            cluster.stop()
            cluster.delete_mailboxes()
    emit(
        {
            "bench": "node_loss",
            "stops": len(seconds),
            "first_success_s": {"p50": statistics.median(seconds), "max": max(seconds)},
            "seconds": seconds,
        }
    )


if __name__ == "__main__":
    main()
