"""Streaming throughput: source(count=N) -> greet -> count on a local cluster.

Starts the scheduler and one executor per progdef on DAGYO_QUEUE, submits the flow, and
measures submit -> flow finished. Then runs the same flow on the embedded runner, and the
hand-written pika baseline (bench/handwritten.py) in the same run, and prints one JSON line:

    {"items": N, "seconds": …, "items_per_s": …, "embedded_items_per_s": …,
     "handwritten_items_per_s": …, "ratio": …, "embedded_ratio": …}

Usage:
    python bench/stream.py --items 300000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import QUEUE_URL, ROOT, chain_flow, delete_mailboxes, emit, now, start_cluster

from executor.progdef import load_catalogue
from scheduler.client import SchedulerClient
from scheduler.embedded import EmbeddedRunner
from scheduler.flow import check_flow, parse_flow


def cluster_run(n: int) -> float:
    cluster = start_cluster(("source", "greet", "count"))
    try:
        with SchedulerClient(cluster.address) as client:
            for _ in range(2):  # warm up: imports, channels, the first job of each executor
                flow_id = client.submit(json.dumps(chain_flow(1000)))
                list(client.watch(flow_id))
            started = now()
            flow_id = client.submit(json.dumps(chain_flow(n)))
            exports = [e.export for e in client.watch(flow_id) if e.WhichOneof("kind") == "export"]
            seconds = now() - started
            record = client.get(flow_id)
        total = json.loads(exports[0].value_json)["value"] if exports else None
        if total != str(n):
            sys.exit(f"the cluster flow ended {record.state} with total {total}, not {n}")
        return seconds
    finally:
        cluster.stop()
        delete_mailboxes(cluster)


def embedded_run(n: int) -> float:
    checked = check_flow(parse_flow(json.dumps(chain_flow(n))), load_catalogue(ROOT / "progdefs"))
    totals: list[int] = []
    runner = EmbeddedRunner(checked, on_export=lambda _, m: totals.append(m.value))
    started = now()
    result = runner.run()
    seconds = now() - started
    if result.state != "succeeded" or totals != [n]:
        sys.exit(f"the embedded flow ended {result.state} with {totals}")
    return seconds


def handwritten_run(n: int) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "handwritten.py"), "--items",
                          str(n)], capture_output=True, text=True, check=True,
                         env={"DAGYO_QUEUE": QUEUE_URL, "PATH": ""})
    return float(json.loads(out.stdout)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the hand-written baseline")
    args = parser.parse_args()
    n = args.items
    seconds = cluster_run(n)
    embedded = embedded_run(n)
    figures = {
        "bench": "stream", "items": n, "seconds": round(seconds, 3),
        "items_per_s": round(n / seconds), "embedded_seconds": round(embedded, 3),
        "embedded_items_per_s": round(n / embedded),
    }
    if not args.no_baseline:
        baseline = handwritten_run(n)
        figures |= {
            "handwritten_items_per_s": round(n / baseline),
            "ratio": round(baseline / seconds, 2),
            "embedded_ratio": round(baseline / embedded, 2),
        }
    emit(figures)


if __name__ == "__main__":
    main()
