"""Streaming throughput: source(count=N) -> greet -> count on a local cluster.

Starts the scheduler and one executor per progdef on DAGYO_QUEUE, submits the flow, and
measures submit -> flow finished. Then runs the same flow on the embedded runner, and the
hand-written pika baseline (bench/handwritten.py) in the same run, each --repeat times (the
best run counts; medians are shown too), and prints one JSON line:

    {"items": N, "seconds": …, "items_per_s": …, "embedded_items_per_s": …,
     "handwritten_items_per_s": …, "ratio": …, "embedded_ratio": …, …}

Usage:
    python bench/stream.py --items 300000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from common import QUEUE_URL, ROOT, chain_flow, delete_mailboxes, emit, now, start_cluster

from executor.progdef import load_catalogue
from executor.stream import tune_gc
from scheduler.client.api import SchedulerClient
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.model import parse_flow


def cluster_run(n: int, repeat: int) -> list[float]:
    cluster = start_cluster(("source", "greet", "count"))
    try:
        with SchedulerClient(cluster.address) as client:
            for _ in range(2):  # warm up: imports, channels, the first job of each executor
                flow_id = client.submit(json.dumps(chain_flow(1000)))
                list(client.watch(flow_id))
            runs = []
            for _ in range(repeat):
                started = now()
                flow_id = client.submit(json.dumps(chain_flow(n)))
                exports = [
                    e.export for e in client.watch(flow_id) if e.WhichOneof("kind") == "export"
                ]
                runs.append(now() - started)
                total = json.loads(exports[0].value_json)["value"] if exports else None
                if total != str(n):
                    record = client.get(flow_id)
                    sys.exit(f"the cluster flow ended {record.state} with total {total}, not {n}")
        return runs
    finally:
        cluster.stop()
        delete_mailboxes(cluster)


def embedded_run(n: int, repeat: int) -> list[float]:
    checked = check_flow(parse_flow(json.dumps(chain_flow(n))), load_catalogue(ROOT / "progdefs"))
    tune_gc()  # as `dagyo run` does
    runs = []
    for _ in range(repeat):
        totals: list[int] = []
        runner = EmbeddedRunner(
            checked, on_export=lambda _, m, totals=totals: totals.append(m.value)
        )
        started = now()
        result = runner.run()
        runs.append(now() - started)
        if result.state != "succeeded" or totals != [n]:
            sys.exit(f"the embedded flow ended {result.state} with {totals}")
    return runs


def handwritten_run(n: int, repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "handwritten.py"), "--items", str(n)],
            capture_output=True,
            text=True,
            check=True,
            env={"DAGYO_QUEUE": QUEUE_URL, "PATH": ""},
        )
        runs.append(float(json.loads(out.stdout)["seconds"]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the hand-written baseline")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each; the best counts (a shared machine only ever slows "
        "a run down), the median is shown too",
    )
    args = parser.parse_args()
    n, repeat = args.items, args.repeat
    runs = {"cluster": cluster_run(n, repeat), "embedded": embedded_run(n, repeat)}
    if not args.no_baseline:
        runs["handwritten"] = handwritten_run(n, repeat)
    best = {name: min(seconds) for name, seconds in runs.items()}
    figures: dict[str, object] = {
        "bench": "stream",
        "items": n,
        "repeat": repeat,
        "seconds": round(best["cluster"], 3),
    }
    for name, prefix in (
        ("cluster", ""),
        ("embedded", "embedded_"),
        ("handwritten", "handwritten_"),
    ):
        if name in runs:
            figures[f"{prefix}items_per_s"] = round(n / best[name])
            figures[f"{prefix}median_items_per_s"] = round(n / statistics.median(runs[name]))
    if "handwritten" in best:
        figures["ratio"] = round(best["handwritten"] / best["cluster"], 2)
        figures["embedded_ratio"] = round(best["handwritten"] / best["embedded"], 2)
    emit(figures)


if __name__ == "__main__":
    main()
