"""Cached results on the embedded runner and on a local cluster: what a cache hit saves.

Two figures, each against the same flow run live (every node run, as ``--no-cache``):

* run -> first export of the hello flow fully cached, against uncached (p50, p99 over
  --repeat runs);
* items/s of a replayed stream: source(count=N) -> greet -> count with greet's N greetings
  replayed from the cache into a count that runs (made non-deterministic here, so it
  runs), against the same flow run live and recorded (a miss, ``--no-cache``), and run
  without a cache at all (what recording costs).

The cache lives in a temporary folder. Then the same two figures on a local cluster (the
scheduler in this process, one executor per progdef, on DAGYO_QUEUE; its cache in the
scheduler's store, in memory): submit -> first export of the hello flow, and the stream's
items/s from submit to the flow's end, greet's stream replayed by the scheduler into a
count that runs against the flow run live and recorded (``--no-cache``). Prints one JSON
line:

    {"runs": …, "first_export_cached_p50_ms": …, "first_export_cached_p99_ms": …,
     "first_export_live_p50_ms": …, "first_export_live_p99_ms": …, "items": N,
     "replayed_items_per_s": …, "live_items_per_s": …, "uncached_items_per_s": …,
     "replay_ratio": …, "cluster": {"runs": …, "first_export_cached_p50_ms": …, …,
     "replayed_items_per_s": …, "live_items_per_s": …, "replay_ratio": …}}

Usage:
    python bench/cache.py --items 300000 --repeat 50 [--no-cluster]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from cache_cluster import cluster_figures
from common import ROOT, chain_flow, emit, hello_flow, now

from executor.core.progdef import Progdef, load_catalogue
from executor.inprocess import tune_gc
from scheduler.cache import CacheSettings, FolderCache
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.model import CheckedFlow
from scheduler.flow.parse import parse_flow


def checked(flow: dict[str, Any], catalogue: dict[str, Progdef]) -> CheckedFlow:
    return check_flow(parse_flow(json.dumps(flow)), catalogue)


def first_export_ms(flow: CheckedFlow, cache: FolderCache, *, refresh: bool) -> float:
    """Milliseconds from the start of a run to its first exported item."""
    first: list[float] = []
    started = now()
    runner = EmbeddedRunner(
        flow,
        on_export=lambda _, __: first.append(now()) if not first else None,
        cache=cache,
        refresh=refresh,
    )
    result = runner.run()
    if result.state != "succeeded" or not first:
        sys.exit(f"the hello flow ended {result.state}")
    return (first[0] - started) * 1000


def items_per_s(flow: CheckedFlow, cache: FolderCache | None, n: int, *, refresh: bool) -> float:
    totals: list[int] = []
    runner = EmbeddedRunner(
        flow, on_export=lambda _, m: totals.append(m.value), cache=cache, refresh=refresh
    )
    started = now()
    result = runner.run()
    seconds = now() - started
    if result.state != "succeeded" or totals != [n]:
        sys.exit(f"the stream flow ended {result.state} with {totals}")
    if cache is not None and not refresh and "hi" not in result.cached:
        sys.exit("greet's stream was not replayed from the cache")
    return n / seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=50, help="runs of the hello flow")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the stream, best counts")
    parser.add_argument("--no-cluster", action="store_true", help="the embedded figures only")
    args = parser.parse_args()
    catalogue = dict(load_catalogue(ROOT / "progdefs"))
    tune_gc()
    with tempfile.TemporaryDirectory() as folder:
        cache = FolderCache(CacheSettings(directory=Path(folder)))
        hello = checked(hello_flow(), catalogue)
        first_export_ms(hello, cache, refresh=True)  # fills the cache, warms imports
        cached = [first_export_ms(hello, cache, refresh=False) for _ in range(args.repeat)]
        live = [first_export_ms(hello, cache, refresh=True) for _ in range(args.repeat)]
        # count runs every time: greet's stream is replayed into it.
        catalogue["count"] = dataclasses.replace(catalogue["count"], deterministic=False)
        stream = checked(chain_flow(args.items), catalogue)
        items_per_s(stream, cache, args.items, refresh=True)  # fills the cache
        replayed = [
            items_per_s(stream, cache, args.items, refresh=False) for _ in range(args.rounds)
        ]
        live_rates = [
            items_per_s(stream, cache, args.items, refresh=True) for _ in range(args.rounds)
        ]
        uncached = [items_per_s(stream, None, args.items, refresh=True) for _ in range(args.rounds)]
    emit(
        {
            "runs": args.repeat,
            "first_export_cached_p50_ms": round(statistics.median(cached), 2),
            "first_export_cached_p99_ms": percentile(cached, 0.99),
            "first_export_live_p50_ms": round(statistics.median(live), 2),
            "first_export_live_p99_ms": percentile(live, 0.99),
            "items": args.items,
            "replayed_items_per_s": round(max(replayed)),
            "live_items_per_s": round(max(live_rates)),
            "uncached_items_per_s": round(max(uncached)),
            "replay_ratio": round(max(replayed) / max(live_rates), 2),
            **({} if args.no_cluster else {"cluster": cluster_figures(args)}),
        }
    )


if __name__ == "__main__":
    main()
