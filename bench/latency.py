"""Latency on a warm cluster: the hello flow, submit -> first export and -> finished.

Prints one JSON line with p50/p99 in milliseconds over --flows flows (200), run one after
another on one client connection:

    {"flows": 200, "first_export_ms": {"p50": …, "p99": …}, "finished_ms": {…}}

With --samples it adds every flow's submit -> first export, in milliseconds, in the order
run ("first_export_samples_ms"), for bench/report.py's latency CDF.

Usage:
    python bench/latency.py
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import delete_mailboxes, emit, hello_flow, now, start_cluster

from scheduler.client.api import SchedulerClient


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(cuts[49] * 1000, 1),
        "p99": round(cuts[98] * 1000, 1),
        "max": round(max(samples) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--samples", action="store_true", help="add every flow's latency")
    args = parser.parse_args()
    cluster = start_cluster(("source", "greet", "void_sink"))
    flow = json.dumps(hello_flow())
    first: list[float] = []
    finished: list[float] = []
    try:
        with SchedulerClient(cluster.address) as client:
            for i in range(args.flows + 10):
                started = now()
                flow_id = client.submit(flow)
                first_at = None
                for event in client.watch(flow_id):
                    kind = event.WhichOneof("kind")
                    if kind == "export" and first_at is None:
                        first_at = now()
                    elif kind == "end":
                        break
                ended = now()
                if i >= 10:  # the first flows warm up imports and channels
                    assert first_at is not None, "the hello flow exported nothing"
                    first.append(first_at - started)
                    finished.append(ended - started)
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    emit(
        {
            "bench": "latency",
            "flows": args.flows,
            "first_export_ms": percentiles(first),
            "finished_ms": percentiles(finished),
            **(
                {"first_export_samples_ms": [round(s * 1000, 2) for s in first]}
                if args.samples
                else {}
            ),
        }
    )


if __name__ == "__main__":
    main()
