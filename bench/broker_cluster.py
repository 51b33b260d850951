"""Three broker nodes beside one, same machine, same run: hello flows/s and items/s.

Starts the three private RabbitMQ nodes of the tests (tests/broker_cluster.py: ports
5701–5703) and one private node of the same server alone (port 5711), so it needs
rabbitmq-server and root, as the tests do. Then, --rounds times, runs on each broker in
turn, each time on a fresh vhost: ``bench/many_flows.py --flows F`` and
``bench/stream.py --items N --repeat 2`` (the cluster contender only, the best of two). On
the one node DAGYO_QUEUE is its URL (classic mailboxes); on the three it lists the three
URLs (quorum mailboxes, every process connected to the first node, so the flows' stream
queues live there);
"three_spread" is the same cluster with a policy spreading the flow queues over the nodes
(``queue-master-locator: min-masters``, RabbitMQ 3.x). Prints one JSON line:

    {"flows": F, "items": N, "rounds": R,
     "one": {"flows_per_s": [...], "items_per_s": [...], "broker_cpu_ms_per_flow": [...]},
     "three": {...}, "three_spread": {...},
     "three_over_one": {"flows_per_s": …, …}, "three_spread_over_one": {…}}

A ratio is the median of the three nodes' figures over the median of the one node's: the
runs alternate, so the machine's other work weighs on both alike.

Usage:
    python bench/broker_cluster.py --flows 300 --items 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common import ROOT, emit

from tests.broker_cluster import BrokerCluster, running_cluster
from tests.private_broker import PrivateBroker, start_private_broker, stop_private_broker

ALONE = {"node": "dagyo-bench-one@localhost", "amqp_port": 5711, "dist_port": 25711}


@contextmanager
def vhost_on(ctl: Any, url_of: Any, *, spread: bool = False) -> Iterator[str]:
    """A fresh vhost on a broker (``ctl`` is its rabbitmqctl); yields DAGYO_QUEUE for it.
    With ``spread``, a policy places each flow queue on the node holding the fewest queues
    (``min-masters``) instead of the node the declaring connection is on."""
    name = f"dagyo-bench-{os.urandom(4).hex()}"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    if spread:
        locator = json.dumps({"queue-master-locator": "min-masters"})
        ctl("set_policy", "-p", name, "--apply-to", "queues", "spread", r"^dagyo\.flow\.", locator)
    try:
        yield url_of(name)
    finally:
        ctl("delete_vhost", name)


def bench(script: str, *args: str, queue: str) -> dict[str, Any]:
    """One run of a benchmark script on DAGYO_QUEUE ``queue``: its JSON line."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DAGYO_QUEUE": queue, "PYTHONPATH": str(ROOT)},
    )
    figures: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return figures


def one_round(queue: str, flows: int, items: int, into: dict[str, list[float]]) -> None:
    many = bench("many_flows.py", "--flows", str(flows), "--no-celery", queue=queue)
    if many["succeeded"] != flows or many["queues_left"]:
        sys.exit(f"bench/broker_cluster.py: a run went wrong: {many}")
    stream = bench(
        "stream.py", "--items", str(items), "--repeat", "2", "--no-baseline", "--no-ray",
        "--no-node", queue=queue,
    )  # fmt: skip
    into["flows_per_s"].append(many["flows_per_s"])
    into["broker_cpu_ms_per_flow"].append(many["cpu_ms_per_flow"].get("broker", 0.0))
    into["items_per_s"].append(stream["items_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    keys = ("flows_per_s", "items_per_s", "broker_cpu_ms_per_flow")
    figures: dict[str, dict[str, list[float]]] = {
        name: {key: [] for key in keys} for name in ("one", "three", "three_spread")
    }
    alone: PrivateBroker = start_private_broker("dagyo-bench-one-", **ALONE)
    try:
        with running_cluster() as cluster:
            alone_url = alone.url.rsplit("/", 1)[0] + "/"
            brokers: dict[str, tuple[Any, Any, bool]] = {
                "one": (alone.ctl, lambda vhost: alone_url + vhost, False),
                "three": (cluster.ctl, lambda vhost: BrokerCluster.url(cluster, vhost), False),
                "three_spread": (cluster.ctl, lambda v: BrokerCluster.url(cluster, v), True),
            }
            for _ in range(args.rounds):
                for name, (ctl, url_of, spread) in brokers.items():
                    with vhost_on(ctl, url_of, spread=spread) as queue:
                        one_round(queue, args.flows, args.items, figures[name])
    finally:
        stop_private_broker(alone)
    ratios = {
        f"{name}_over_one": {
            key: round(
                statistics.median(figures[name][key]) / statistics.median(figures["one"][key]), 2
            )
            for key in keys
        }
        for name in ("three", "three_spread")
    }
    emit(
        {
            "bench": "broker_cluster",
            "flows": args.flows,
            "items": args.items,
            "rounds": args.rounds,
            **figures,
            **ratios,
        }
    )


if __name__ == "__main__":
    main()
