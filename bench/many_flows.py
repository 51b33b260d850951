"""Many small flows at once: --flows hello flows submitted concurrently to one cluster.

Every flow runs its nodes (submitted with no_cache: bench/cache.py measures the cache).

Prints one JSON line: how many succeeded, the wall time from the first submit to the last
flow's end, the flow queues left in the broker (must be 0) and the scheduler's RSS:

    {"flows": 1000, "succeeded": 1000, "seconds": …, "flows_per_s": …,
     "queues_left": 0, "scheduler_rss_mb": …,
     "cpu_ms_per_flow": {"broker": …, "scheduler": …, "executors": …, "total": …},
     "cores_busy": …}

cpu_ms_per_flow is the CPU time each part used while the flows ran, over the flows: the
RabbitMQ nodes DAGYO_QUEUE names (those that run on this machine, every node of a
cluster), this process (the scheduler, and the client threads submitting and watching),
the executor processes. cores_busy is their sum over the
wall time: on a machine of N cores, a figure near N means the flows/s are CPU-bound.

Then, unless --no-celery (or without Celery, the bench extra), the Celery contender
(bench/celery_chain.py: a chain source -> greet -> sink per flow, a prefork worker of
concurrency = cores, on the same broker) runs for as long as the flows took, one client
keeping --celery-in-flight chains sent and not yet done, and adds its figures beside:

    {"celery_chains": …, "celery_seconds": …, "celery_chains_per_s": …,
     "celery_cpu_ms_per_chain": {"broker": …, "client": …, "worker": …, "total": …},
     "celery_cores_busy": …, "celery_ratio": …, "cpu_ratio": …, "load": [… , …]}

celery_ratio is dagyo's flows/s over Celery's chains/s, cpu_ratio dagyo's CPU per flow
over Celery's per chain; load is the machine's 1-minute load average as each part began.

With --timeline it adds, for every flow, the seconds from the first submit until it was
seen ended ("ended_at_s", sorted), looked for every 0.1 s from the first submit on, for
bench/report.py's flows/s over time.

With --schedulers N (DAGYO_STATE a PostgreSQL URL of a database of its own) the cluster
runs N schedulers on one vhost sharing that database: this process and N - 1 `dagyo
scheduler` processes; flows are submitted round-robin to all of them, and cpu_ms_per_flow
has the part of each: "scheduler" (this process), "schedulers" (the others, together) and
"database" (the PostgreSQL server processes of the database's sessions).

Usage:
    python bench/many_flows.py --flows 1000
    DAGYO_STATE=postgresql://postgres@127.0.0.1:5432/bench python bench/many_flows.py \
        --flows 300 --schedulers 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    QUEUE_URL,
    CpuMeter,
    broker_pids,
    celery_ready,
    delete_mailboxes,
    emit,
    flow_queues_left,
    hello_flow,
    load_average,
    now,
    rss_bytes,
    start_cluster,
)
from schedulers import SchedulerProcess, database_pids, wait_shared

from executor.core.progdef import catalogue_folders
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2

ENDED = {
    scheduler_pb2.FLOW_STATE_SUCCEEDED,
    scheduler_pb2.FLOW_STATE_FAILED,
    scheduler_pb2.FLOW_STATE_CANCELLED,
}


def watch(
    client: SchedulerClient,
    flows: int,
    started: float,
    ended_at: dict[str, float],
    done: threading.Event,
) -> None:
    """Note when each flow is first seen ended, every 0.1 s, until ``done``."""
    while not done.is_set():
        for record in client.list(limit=flows * 2):
            if record.state in ENDED and record.id not in ended_at:
                ended_at[record.id] = now() - started
        done.wait(0.1)


def run_celery(seconds: float, in_flight: int, loads: list[float]) -> dict[str, Any]:
    """The Celery contender for ``seconds``: its figures, prefixed ``celery_``."""
    from celery_chain import CeleryContender

    with CeleryContender(QUEUE_URL) as celery:
        broker: list[int | str] = list(broker_pids())
        cpu = CpuMeter({"broker": broker, "client": ["self"], "worker": celery.pids()})
        loads.append(load_average())
        cpu.start()
        chains, took = celery.sustain(seconds, in_flight)
        cpu.stop()
    return {
        "celery_chains": chains,
        "celery_seconds": round(took, 2),
        "celery_chains_per_s": round(chains / took, 1),
        "celery_cpu_ms_per_chain": cpu.per_unit_ms(chains),
        "celery_cores_busy": round(sum(cpu.used.values()) / took, 2),
        "celery_in_flight": in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument(
        "--submitters", type=int, default=16, help="client threads submitting at once"
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery contender")
    parser.add_argument(
        "--celery-in-flight", type=int, default=64, help="Celery chains sent and not yet done"
    )
    parser.add_argument("--timeline", action="store_true", help="add when each flow ended")
    parser.add_argument(
        "--schedulers", type=int, default=1, help="schedulers sharing DAGYO_STATE (PostgreSQL)"
    )
    args = parser.parse_args()
    loads = [load_average()]
    state = os.environ.get("DAGYO_STATE", "")
    if args.schedulers > 1 and not state.startswith(("postgresql://", "postgres://")):
        parser.error("--schedulers N > 1 needs DAGYO_STATE, a PostgreSQL URL")
    postgres = state.startswith(("postgresql://", "postgres://"))
    options = {"state_path": state} if postgres else {}
    cluster = start_cluster(("source", "greet", "void_sink"), **options)
    others = [
        SchedulerProcess(dict(os.environ), catalogue_folders(cluster.settings.progdefs)[0])
        for _ in range(args.schedulers - 1)
    ]
    if others:
        wait_shared(state, args.schedulers)
    flow = json.dumps(hello_flow())
    executors: list[int | str] = [p.pid for ps in cluster.executors.values() for p in ps]
    broker: list[int | str] = list(broker_pids())  # every node of a cluster
    parts: dict[str, list[int | str]] = {
        "broker": broker,
        "scheduler": ["self"],
        "executors": executors,
    }
    if others:
        parts["schedulers"] = [o.pid for o in others]
        parts["database"] = database_pids(state)
    cpu = CpuMeter(parts)
    clients = [SchedulerClient(cluster.address)] + [SchedulerClient(o.address) for o in others]
    ring = itertools.cycle(clients)
    try:
        with SchedulerClient(cluster.address) as client:
            cpu.start()
            started = now()
            ended_at: dict[str, float] = {}
            watching = threading.Event()
            if args.timeline:
                watcher = threading.Thread(
                    target=watch, args=(client, args.flows, started, ended_at, watching)
                )
                watcher.start()
            with ThreadPoolExecutor(args.submitters) as pool:
                targets = [next(ring) for _ in range(args.flows)]
                flow_ids = list(pool.map(lambda c: c.submit(flow, no_cache=True), targets))
            pending = set(flow_ids)
            states: dict[int, int] = {}
            failures: Counter[str] = Counter()
            while pending:
                for record in client.list(limit=args.flows * 2):
                    if record.id in pending and record.state in ENDED:
                        pending.discard(record.id)
                        states[record.state] = states.get(record.state, 0) + 1
                        if record.failure.error:
                            failures[record.failure.error[:90]] += 1
                if pending:
                    time.sleep(0.1)
            seconds = now() - started
            cpu.stop()
            if args.timeline:
                watching.set()
                watcher.join()
        rss = rss_bytes()
    finally:
        for other in others:
            other.stop()
        for each in clients:
            each.close()
        cluster.stop()
        delete_mailboxes(cluster)
    celery = (
        run_celery(seconds, args.celery_in_flight, loads)
        if not args.no_celery and celery_ready("bench/many_flows.py")
        else {}
    )
    total_ms = cpu.per_unit_ms(args.flows)["total"]
    if celery:
        celery["celery_ratio"] = round(args.flows / seconds / celery["celery_chains_per_s"], 3)
        celery["cpu_ratio"] = round(total_ms / celery["celery_cpu_ms_per_chain"]["total"], 2)
    emit(
        {
            "bench": "many_flows",
            "flows": args.flows,
            "schedulers": args.schedulers,
            "succeeded": states.get(scheduler_pb2.FLOW_STATE_SUCCEEDED, 0),
            "seconds": round(seconds, 2),
            "flows_per_s": round(args.flows / seconds, 1),
            "queues_left": flow_queues_left(),
            "scheduler_rss_mb": round(rss / 2**20, 1),
            "cpu_ms_per_flow": cpu.per_unit_ms(args.flows),
            "cores_busy": round(sum(cpu.used.values()) / seconds, 2),
            **celery,
            "load": loads,
            **({"failures": dict(failures)} if failures else {}),
            **(
                {"ended_at_s": sorted(round(ended_at.get(f, seconds), 3) for f in flow_ids)}
                if args.timeline
                else {}
            ),
        }
    )


if __name__ == "__main__":
    main()
