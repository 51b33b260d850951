"""Latency on a warm cluster: the hello flow, submit -> first export and -> finished.

Prints one JSON line with p50/p99 in milliseconds over --flows flows (200), run one after
another on one client connection, each running its nodes (no_cache: bench/cache.py measures
the cache):

    {"flows": 200, "first_export_ms": {"p50": …, "p99": …}, "finished_ms": {…}}

Unless --no-celery (or without Celery, the bench extra), the Celery contender
(bench/celery_chain.py: a chain source -> greet -> sink per flow, a prefork worker of
concurrency = cores, on the same broker, result backend rpc://) takes turns with dagyo,
one chain sent after each flow, and adds its sent -> done ("celery_sent_done_ms"), and
"celery_ratio" and "celery_p99_ratio": dagyo's first-export p50 and p99 over Celery's;
"load" is the machine's 1-minute load average before and after.

With --samples it adds every flow's submit -> first export, in milliseconds, in the order
run ("first_export_samples_ms"), for bench/report.py's latency CDF.

With --phases it adds where a submit's time goes ("phases_ms": p50 per flow of each step,
timed around the scheduler's own functions, in this process): the gRPC call as the client
sees it, the servicer's Submit, the flow's queues declared (only by the submits that found
no spare: "calls_per_flow" says how many did), its export consumers, its jobs published,
and the SQLite writes.

Usage:
    python bench/latency.py
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from common import (
    QUEUE_URL,
    celery_ready,
    delete_mailboxes,
    emit,
    hello_flow,
    load_average,
    now,
    start_cluster,
)

from scheduler.client.api import SchedulerClient


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(cuts[49] * 1000, 1),
        "p99": round(cuts[98] * 1000, 1),
        "max": round(max(samples) * 1000, 1),
    }


# (owner, function name, phase) timed with --phases.
PHASES = (
    ("scheduler.service.api:SchedulerServicer", "Submit", "servicer_submit"),
    ("scheduler.service.lifecycle:Lifecycle", "submit", "lifecycle_submit"),
    ("scheduler.service.broker:Broker", "declare_flow_queues", "declare_queues"),
    ("scheduler.service.broker:Broker", "consume", "consume_exports"),
    ("scheduler.service.broker:Broker", "publish_jobs", "publish_jobs"),
    ("scheduler.service.store.sql:SqlStore", "save", "store_saves"),
)


def time_phases() -> dict[str, list[float]]:
    """Wrap each function of PHASES to add its duration to the returned lists."""
    import importlib

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[phase].append(time.perf_counter() - started)

        return wrapper

    for owner, name, phase in PHASES:
        module, _, cls = owner.partition(":")
        target = getattr(importlib.import_module(module), cls)
        setattr(target, name, timed(getattr(target, name), phase))
    return spent


def phases(spent: dict[str, list[float]], client_submit: list[float], flows: int) -> dict:
    """The client's submit and each phase's p50 in ms; a phase run several times per flow
    (the SQLite saves) gives its mean total per flow instead; "calls_per_flow" says how
    often a phase ran per flow where that is not once."""
    out: dict[str, Any] = {"client_submit": round(statistics.median(client_submit) * 1000, 2)}
    calls = {}
    for phase, samples in spent.items():
        if len(samples) > flows * 1.5:
            out[phase] = round(sum(samples) / flows * 1000, 2)
        else:
            out[phase] = round(statistics.median(samples) * 1000, 2)
        if len(samples) != flows:
            calls[phase] = round(len(samples) / flows, 2)
    if calls:
        out["calls_per_flow"] = calls
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--samples", action="store_true", help="add every flow's latency")
    parser.add_argument("--phases", action="store_true", help="add where a submit's time goes")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery contender")
    args = parser.parse_args()
    loads = [load_average()]
    with_celery = not args.no_celery and celery_ready("bench/latency.py")
    celery_runs: list[float] = []
    spent = time_phases() if args.phases else {}
    client_submit: list[float] = []
    cluster = start_cluster(("source", "greet", "void_sink"))
    flow = json.dumps(hello_flow())
    first: list[float] = []
    finished: list[float] = []
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(SchedulerClient(cluster.address))
            if with_celery:
                from celery_chain import CeleryContender

                celery = stack.enter_context(CeleryContender(QUEUE_URL))
            for i in range(args.flows + 10):
                if i == 10:
                    spent.clear()  # the first flows warm up imports and channels
                started = now()
                flow_id = client.submit(flow, no_cache=True)
                client_submit.append(now() - started)
                first_at = None
                for event in client.watch(flow_id):
                    kind = event.WhichOneof("kind")
                    if kind == "export" and first_at is None:
                        first_at = now()
                    elif kind == "end":
                        break
                ended = now()
                if i >= 10:
                    assert first_at is not None, "the hello flow exported nothing"
                    first.append(first_at - started)
                    finished.append(ended - started)
                if with_celery:
                    sent_done = celery.once()
                    if i >= 10:
                        celery_runs.append(sent_done)
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    loads.append(load_average())
    celery_figures: dict[str, Any] = {}
    if celery_runs:
        ours, theirs = percentiles(first), percentiles(celery_runs)
        celery_figures = {
            "celery_sent_done_ms": theirs,
            "celery_ratio": round(ours["p50"] / theirs["p50"], 2),
            "celery_p99_ratio": round(ours["p99"] / theirs["p99"], 2),
        }
    emit(
        {
            "bench": "latency",
            "flows": args.flows,
            "first_export_ms": percentiles(first),
            "finished_ms": percentiles(finished),
            **celery_figures,
            "load": loads,
            **(
                {"first_export_samples_ms": [round(s * 1000, 2) for s in first]}
                if args.samples
                else {}
            ),
            **({"phases_ms": phases(spent, client_submit[10:], args.flows)} if spent else {}),
        }
    )


if __name__ == "__main__":
    main()
