"""How long a broker node's loss keeps new flows from running, on three loopback nodes.

Starts the three private RabbitMQ nodes of the tests (tests/broker_cluster.py: ports 5701–5703,
so it needs rabbitmq-server and root, as the tests do) and a local cluster on all three URLs.
Then, --stops times over, starts a flow that runs for a while (source -> slow -> count,
--running-s seconds of work), stops one node (each in turn) once it runs, submits a hello
flow at once and again until one succeeds, waits for the running flow's end, and starts the
node again. Prints one JSON line:

    {"stops": 10, "first_success_s": {"p50": …, "max": …}, "seconds": [...],
     "running_flow": {"undisturbed_s": …, "by_node": {"0": [...], "1": [...], "2": [...]}}}

where a first_success figure is the time from the node's stop to the end of the first hello
flow that succeeded after it, and running_flow says what the stop of node i did to the flow
that ran: "failed N s after the stop" or "succeeded in N s" (against undisturbed_s, its
time with no stop). Every process starts on node 0, the first URL, so its flows' stream
queues live there; a process that lost its node reconnects to the first live URL and stays
there, so the node holding them moves: from node 0 to node 1 at node 0's stop, back to node
0 at node 1's.

Usage:
    python bench/node_loss.py --stops 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
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


def slow_chain(seconds: float) -> str:
    """source -> slow (10 ms an item) -> count, about ``seconds`` of work."""
    items = max(1, int(seconds * 100))
    return json.dumps(
        {
            "name": "running",
            "nodes": {
                "s": {"progdef": "source"},
                "w": {"progdef": "slow"},
                "n": {"progdef": "count"},
            },
            "edges": [{"from": "s.src", "to": "w.items"}, {"from": "w.items", "to": "n.items"}],
            "consts": [
                {"to": "s.count", "values": [{"value": items}]},
                {"to": "w.delay_ms", "values": [{"value": 10}]},
            ],
            "exports": {"total": "n.total"},
        }
    )


def start_running(client: SchedulerClient, flow: str) -> str:
    """Submit the long flow and wait until its slow node runs; its id."""
    flow_id = client.submit(flow, source="running.json")
    eventually(
        lambda: client.get(flow_id),
        60,
        until=lambda r: any(
            n.node == "w" and n.state == scheduler_pb2.NODE_STATE_RUNNING for n in r.nodes
        ),
    )
    return flow_id


def ended(client: SchedulerClient, flow_id: str) -> scheduler_pb2.FlowRecord:
    return eventually(
        lambda: client.get(flow_id),
        120,
        until=lambda r: (
            r.state not in (scheduler_pb2.FLOW_STATE_PENDING, scheduler_pb2.FLOW_STATE_RUNNING)
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--running-s", type=float, default=8.0)
    args = parser.parse_args()
    seconds: list[float] = []
    by_node: dict[str, list[str]] = {}
    with running_cluster() as brokers:
        catalogue = Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "progdefs"
        names = ("source", "greet", "void_sink", "slow", "count")
        private_catalogue(ROOT / "progdefs", catalogue, names, tag="bench")
        cluster = LocalCluster(progdefs_dir=catalogue, queue_url=brokers.url())
        cluster.start()
        flow = json.dumps(hello_flow())
        try:
            with SchedulerClient(cluster.address) as client:
                assert run_hello(client, flow), "a hello flow fails before any stop"
                running = slow_chain(args.running_s)
                started = now()
                record = ended(client, start_running(client, running))
                assert record.state == scheduler_pb2.FLOW_STATE_SUCCEEDED, record
                undisturbed = round(now() - started, 2)
                for stop in range(args.stops):
                    index = stop % len(brokers.nodes)
                    started = now()
                    flow_id = start_running(client, running)
                    stopped, stopped_at = now(), time.time()
                    brokers.stop_node(index)
                    try:
                        while not run_hello(client, flow):
                            pass
                        seconds.append(round(now() - stopped, 2))
                        record = ended(client, flow_id)
                        if record.state == scheduler_pb2.FLOW_STATE_SUCCEEDED:
                            what = f"succeeded in {now() - started:.1f} s"
                        else:
                            what = f"failed {record.ended - stopped_at:.1f} s after the stop"
                        by_node.setdefault(str(index), []).append(what)
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
            "running_flow": {"undisturbed_s": undisturbed, "by_node": by_node},
        }
    )


if __name__ == "__main__":
    main()
