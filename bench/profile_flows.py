"""Where a hello flow's CPU goes: the scheduler profiled by yappi, every process by /proc.

Starts a local cluster (the scheduler in this process, under yappi's CPU clock, every
thread), runs --flows hello flows submitted by --submitters threads of a client in a
process of its own (so the client's work is not the scheduler's), and prints one JSON
line: CPU per flow of each process from /proc (as bench/many_flows.py), the scheduler's
CPU per flow by area (the self time of every function, summed by the module it is in),
and its --top functions by self time, with their calls per flow:

    {"flows": …, "cpu_ms_per_flow": {"broker": …, "scheduler": …, "executors": …,
     "client": …, "total": …}, "scheduler_ms_per_flow_by_area": {"grpc": …, …},
     "top": [[function, ms_per_flow, calls_per_flow], …]}

yappi slows the scheduler (its CPU per flow is higher than bench/many_flows.py's); the
shares are what to read. Needs yappi (the bench extra).

Usage:
    python bench/profile_flows.py --flows 500
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from common import (
    ROOT,
    CpuMeter,
    broker_pids,
    delete_mailboxes,
    emit,
    hello_flow,
    load_average,
    start_cluster,
)

# module prefix (or path part) -> area; the first match counts
AREAS = (
    ("grpc", "grpc"),
    ("pika", "pika (AMQP)"),
    ("google/protobuf", "protobuf"),
    ("sqlite3", "SQLite"),
    ("scheduler/service/store", "store (records)"),
    ("scheduler/service/broker", "scheduler: broker side"),
    ("scheduler/service/channels", "scheduler: broker side"),
    ("scheduler/service/consumers", "scheduler: broker side"),
    ("scheduler/service/flowqueues", "scheduler: broker side"),
    ("executor/core/amqp", "scheduler: broker side"),
    ("scheduler/flow", "flow parse, check, plan"),
    ("scheduler/service", "scheduler: other service code"),
    ("executor/core", "shared core (events, frames, types)"),
    ("logging", "logging"),
    ("threading", "threading, queues"),
    ("queue", "threading, queues"),
    ("selectors", "sockets, select"),
    ("socket", "sockets, select"),
    ("ssl", "sockets, select"),
    ("json", "json"),
    ("opentelemetry", "tracing"),
)


def client(address: str, flows: int, submitters: int) -> None:
    """Submit ``flows`` hello flows with ``submitters`` threads; wait until all ended."""
    from scheduler.client.api import SchedulerClient
    from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

    ended = {pb.FLOW_STATE_SUCCEEDED, pb.FLOW_STATE_FAILED, pb.FLOW_STATE_CANCELLED}
    flow = json.dumps(hello_flow())
    with SchedulerClient(address) as scheduler:
        with ThreadPoolExecutor(submitters) as pool:
            pending = set(pool.map(lambda _: scheduler.submit(flow, no_cache=True), range(flows)))
        states: Counter[int] = Counter()
        while pending:
            for record in scheduler.list(limit=flows * 2):
                if record.id in pending and record.state in ended:
                    pending.discard(record.id)
                    states[record.state] += 1
            time.sleep(0.1)
    print(json.dumps({"succeeded": states[pb.FLOW_STATE_SUCCEEDED]}), flush=True)


def area_of(module: str) -> str:
    for prefix, area in AREAS:
        if prefix in module:
            return area
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=500)
    parser.add_argument("--submitters", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the client process's address
    args = parser.parse_args()
    if args.client:
        client(args.client, args.flows, args.submitters)
        return
    import yappi

    loads = [load_average()]
    yappi.set_clock_type("cpu")
    cluster = start_cluster(("source", "greet", "void_sink"))
    executors: list[int | str] = [p.pid for ps in cluster.executors.values() for p in ps]
    broker: list[int | str] = list(broker_pids())
    try:
        runner = [sys.executable, __file__, "--flows", str(args.flows)]
        warm = subprocess.run(
            [*runner[:3], "20", "--client", cluster.address], capture_output=True, check=True
        )
        assert b'"succeeded": 20' in warm.stdout, warm
        yappi.start(builtins=False, profile_threads=True)
        the_client = subprocess.Popen(
            [*runner, "--submitters", str(args.submitters), "--client", cluster.address],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        cpu = CpuMeter(
            {
                "broker": broker,
                "scheduler": ["self"],
                "executors": executors,
                "client": [the_client.pid],
            }
        )
        cpu.start()
        started = time.perf_counter()
        out, _ = the_client.communicate(timeout=3600)
        cpu.stop()
        seconds = time.perf_counter() - started
        yappi.stop()
        stats = yappi.get_func_stats()
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    loads.append(load_average())
    n = args.flows
    areas: Counter[str] = Counter()
    rows = []
    for stat in stats:
        areas[area_of(stat.module)] += stat.tsub
        rows.append((stat.tsub, f"{stat.module.rpartition('/')[2]}:{stat.name}", stat.ncall))
    rows.sort(reverse=True)
    emit(
        {
            "bench": "profile_flows",
            "flows": n,
            "succeeded": json.loads(out.splitlines()[-1])["succeeded"],
            "seconds": round(seconds, 2),
            "cpu_ms_per_flow": cpu.per_unit_ms(n),
            "scheduler_ms_per_flow_by_area": {
                area: round(spent * 1000 / n, 2) for area, spent in areas.most_common()
            },
            "top": [
                [name, round(spent * 1000 / n, 3), round(calls / n, 1)]
                for spent, name, calls in rows[: args.top]
            ],
            "load": loads,
        }
    )


if __name__ == "__main__":
    main()
