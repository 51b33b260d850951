"""The cluster's figures of bench/cache.py: a local cluster whose scheduler caches results."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import QUEUE_URL, ROOT, chain_flow, hello_flow, now

from scheduler.client.api import SchedulerClient
from scheduler.local_cluster import LocalCluster, private_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

NAMES = ("source", "greet", "void_sink", "count")


def cluster_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Submit -> first export of hello cached and not, and a replayed stream's items/s."""
    catalogue = Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "progdefs"
    private_catalogue(ROOT / "progdefs", catalogue, NAMES, tag="bench")
    # count runs every time: greet's stream is replayed into it.
    metadata = json.loads((catalogue / "count" / "progdef.json").read_text())
    metadata["deterministic"] = False
    (catalogue / "count" / "progdef.json").write_text(json.dumps(metadata))
    cluster = LocalCluster(progdefs_dir=catalogue, queue_url=QUEUE_URL)
    try:
        cluster.start()
        with SchedulerClient(cluster.address) as client:
            hello = json.dumps(hello_flow())
            first_export_ms(client, hello, no_cache=True)  # fills the cache, warms up
            cached = [first_export_ms(client, hello) for _ in range(args.repeat)]
            live = [first_export_ms(client, hello, no_cache=True) for _ in range(args.repeat)]
            stream = json.dumps(chain_flow(args.items))
            items_per_s(client, stream, args.items, no_cache=True)  # fills the cache
            replayed = [items_per_s(client, stream, args.items) for _ in range(args.rounds)]
            live_rates = [
                items_per_s(client, stream, args.items, no_cache=True) for _ in range(args.rounds)
            ]
    finally:
        cluster.stop()
        cluster.delete_mailboxes()
    return {
        "runs": args.repeat,
        "first_export_cached_p50_ms": round(statistics.median(cached), 2),
        "first_export_cached_p99_ms": percentile(cached, 0.99),
        "first_export_live_p50_ms": round(statistics.median(live), 2),
        "first_export_live_p99_ms": percentile(live, 0.99),
        "items": args.items,
        "replayed_items_per_s": round(max(replayed)),
        "live_items_per_s": round(max(live_rates)),
        "replay_ratio": round(max(replayed) / max(live_rates), 2),
    }


def first_export_ms(client: SchedulerClient, flow: str, *, no_cache: bool = False) -> float:
    """Milliseconds from submit to the flow's first export (then waits for its end)."""
    started = now()
    flow_id = client.submit(flow, no_cache=no_cache)
    first = 0.0
    for event in client.watch(flow_id):
        kind = event.WhichOneof("kind")
        if kind == "export" and not first:
            first = now()
        elif kind == "end":
            if event.end.state != pb.FLOW_STATE_SUCCEEDED or not first:
                sys.exit(f"the hello flow {flow_id} did not succeed with an export")
            break
    return (first - started) * 1000


def items_per_s(client: SchedulerClient, flow: str, n: int, *, no_cache: bool = False) -> float:
    """The stream's items per second, from submit to the flow's end."""
    started = now()
    flow_id = client.submit(flow, no_cache=no_cache)
    for event in client.watch(flow_id):
        if event.WhichOneof("kind") == "end":
            break
    seconds = now() - started
    record = client.get(flow_id)
    states = {node.node: node.state for node in record.nodes}
    if record.state != pb.FLOW_STATE_SUCCEEDED or [e.value_json for e in record.exports] != [
        f'{{"value":"{n}"}}'
    ]:
        sys.exit(f"the stream flow {flow_id} ended {record.state}")
    if not no_cache and states["hi"] != pb.NODE_STATE_CACHED:
        sys.exit("greet's stream was not replayed from the cache")
    return n / seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)
