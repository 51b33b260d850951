"""Streaming throughput: source(count=N) -> greet -> count, by five contenders side by side.

Starts the scheduler and one executor per progdef on DAGYO_QUEUE and measures submit ->
flow finished of the flow on that cluster; then the same flow on the embedded runner, the
hand-written pika baseline (bench/handwritten.py), when Ray is installed (the bench
extra), what a Ray user would write (bench/ray_pipeline.py), and, when Node.js and the
node executor are installed, the cluster flow with its middle node on Node.js:
source -> upper -> count (``node_items_per_s``, ``node_ratio`` its speed over the Python
middle node's). The contenders take turns:
each round runs every one once, --repeat rounds; the best run of each counts (a shared
machine only ever slows a run down) and medians are shown too. Prints one JSON line:

    {"items": N, "seconds": …, "items_per_s": …, "embedded_items_per_s": …,
     "handwritten_items_per_s": …, "ray_items_per_s": …, "node_items_per_s": …, "ratio": …,
     "embedded_ratio": …, "ray_ratio": …, "embedded_ray_ratio": …, "node_ratio": …, …}

``ratio`` and ``embedded_ratio`` are the cluster's and the embedded runner's speed over
the hand-written baseline's, ``ray_ratio`` and ``embedded_ray_ratio`` over Ray's.

Usage:
    python bench/stream.py --items 300000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from common import QUEUE_URL, ROOT, chain_flow, delete_mailboxes, emit, now, start_cluster

from executor.core.errors import DagyoError
from executor.core.progdef import load_catalogue
from executor.inprocess import tune_gc
from scheduler.client.api import SchedulerClient
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from scheduler.local_cluster import LocalCluster
from scheduler.local_processes import check_node_runtime

# contender -> the prefix of its figures
PREFIXES = {
    "cluster": "",
    "embedded": "embedded_",
    "handwritten": "handwritten_",
    "ray": "ray_",
    "node": "node_",
}


def node_flow(count: int) -> dict[str, Any]:
    """source(count) -> upper (on Node.js) -> count, exporting the total."""
    flow = chain_flow(count, name="stream-node")
    flow["nodes"]["hi"] = {"progdef": "upper"}
    flow["edges"] = [
        {"from": "names.src", "to": "hi.text"},
        {"from": "hi.upper", "to": "total.items"},
    ]
    return flow


def node_ready() -> bool:
    """Whether the node executor can run here (else a line on stderr says why)."""
    try:
        check_node_runtime(load_catalogue(ROOT / "progdefs").values())
    except DagyoError as e:
        print(f"bench/stream.py: no node contender: {e}", file=sys.stderr)
        return False
    return True


def cluster_once(
    client: SchedulerClient, n: int, flow: Callable[[int], dict[str, Any]] = chain_flow
) -> float:
    started = now()
    flow_id = client.submit(json.dumps(flow(n)), no_cache=True)
    exports = [e.export for e in client.watch(flow_id) if e.WhichOneof("kind") == "export"]
    seconds = now() - started
    total = json.loads(exports[0].value_json)["value"] if exports else None
    if total != str(n):
        record = client.get(flow_id)
        sys.exit(f"the cluster flow ended {record.state} with total {total}, not {n}")
    return seconds


def embedded_once(n: int) -> float:
    checked = check_flow(parse_flow(json.dumps(chain_flow(n))), load_catalogue(ROOT / "progdefs"))
    totals: list[int] = []
    runner = EmbeddedRunner(checked, on_export=lambda _, m: totals.append(m.value))
    started = now()
    result = runner.run()
    seconds = now() - started
    if result.state != "succeeded" or totals != [n]:
        sys.exit(f"the embedded flow ended {result.state} with {totals}")
    return seconds


def script_once(script: str, n: int) -> float:
    """Run a contender of its own (bench/handwritten.py, bench/ray_pipeline.py) once."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--items", str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={"DAGYO_QUEUE": QUEUE_URL, "PATH": ""},
    )
    return float(json.loads(out.stdout.splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the hand-written baseline")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray contender")
    parser.add_argument("--no-node", action="store_true", help="skip the node contender")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds, each running every contender once; the best run of each counts (a "
        "shared machine only ever slows a run down), the median is shown too",
    )
    args = parser.parse_args()
    n, repeat = args.items, args.repeat
    with_ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    if not args.no_ray and not with_ray:
        print(
            "bench/stream.py: no Ray, so no Ray contender (pip install -e '.[bench]')",
            file=sys.stderr,
        )
    with_node = not args.no_node and node_ready()
    runs: dict[str, list[float]] = {name: [] for name in PREFIXES}
    cluster: LocalCluster = start_cluster(
        ("source", "greet", "count", *(("upper",) if with_node else ()))
    )
    tune_gc()  # as `dagyo run` does, for the embedded runner in this process
    try:
        with SchedulerClient(cluster.address) as client:
            for _ in range(2):  # warm up: imports, channels, the first job of each executor
                cluster_once(client, 1000)
                if with_node:
                    cluster_once(client, 1000, node_flow)
            embedded_once(1000)
            contenders: dict[str, Callable[[], float]] = {
                "cluster": lambda: cluster_once(client, n),
                "embedded": lambda: embedded_once(n),
            }
            if not args.no_baseline:
                contenders["handwritten"] = lambda: script_once("handwritten.py", n)
            if with_ray:
                contenders["ray"] = lambda: script_once("ray_pipeline.py", n)
            if with_node:
                contenders["node"] = lambda: cluster_once(client, n, node_flow)
            for _ in range(repeat):
                for name, once in contenders.items():
                    runs[name].append(once())
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    best = {name: min(seconds) for name, seconds in runs.items() if seconds}
    figures: dict[str, object] = {
        "bench": "stream",
        "items": n,
        "repeat": repeat,
        "seconds": round(best["cluster"], 3),
    }
    for name, prefix in PREFIXES.items():
        if name in best:
            figures[f"{prefix}items_per_s"] = round(n / best[name])
            figures[f"{prefix}median_items_per_s"] = round(n / statistics.median(runs[name]))
    for baseline, suffix in (("handwritten", ""), ("ray", "ray_")):
        if baseline in best:
            figures[f"{suffix}ratio"] = round(best[baseline] / best["cluster"], 2)
            figures[f"embedded_{suffix}ratio"] = round(best[baseline] / best["embedded"], 2)
    if "node" in best:
        figures["node_ratio"] = round(best["cluster"] / best["node"], 2)
    emit(figures)


if __name__ == "__main__":
    main()
