"""One executor holding many jobs: --jobs concurrent `slow` jobs on a single executor.

Each flow is source(count=2) -> slow(delay_ms) -> void_sink; the slow executor runs every
slow job at once (max_jobs = --jobs). Measures its RSS idle and with all jobs running.
Prints one JSON line:

    {"jobs": 1000, "succeeded": 1000, "peak_jobs": …, "idle_rss_mb": …, "busy_rss_mb": …,
     "rss_per_job_kb": …, "seconds": …}

With --idle, no scheduler and no flows: one executor of `slow` and --jobs jobs each
waiting on an input stream that has no item yet (see bench/idle_jobs.py).

Usage:
    python bench/many_jobs.py --jobs 1000
    python bench/many_jobs.py --idle --jobs 10000
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import idle_jobs
from common import delete_mailboxes, emit, now, rss_bytes, start_cluster

from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2


def slow_flow(delay_ms: int) -> dict:
    return {
        "name": "held",
        "nodes": {
            "s": {"progdef": "source"},
            "w": {"progdef": "slow"},
            "v": {"progdef": "void_sink"},
        },
        "edges": [{"from": "s.src", "to": "w.items"}, {"from": "w.items", "to": "v.sink"}],
        "consts": [
            {"to": "s.count", "values": [{"value": 2}]},
            {"to": "w.delay_ms", "values": [{"value": delay_ms}]},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument(
        "--delay-ms", type=int, default=15_000, help="per item, so each slow job lasts twice this"
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="no scheduler: every job waits on an input stream with no item yet (idle_jobs.py)",
    )
    args = parser.parse_args()
    if args.idle:
        emit(idle_jobs.run(args.jobs))
        return
    slots = str(args.jobs)
    cluster = start_cluster(("source", "slow", "void_sink"), extra_env={"DAGYO_MAX_JOBS": slots})
    (slow,) = cluster.executors["slow"]
    time.sleep(1.0)
    idle = rss_bytes(slow.pid)
    flow = json.dumps(slow_flow(args.delay_ms))
    peak_jobs, busy = 0, idle
    try:
        with SchedulerClient(cluster.address) as client:
            started = now()
            with ThreadPoolExecutor(16) as pool:
                flow_ids = list(pool.map(lambda _: client.submit(flow), range(args.jobs)))
            while True:
                records = {r.id: r for r in client.list(limit=args.jobs * 2)}
                running = sum(
                    1
                    for f in flow_ids
                    for n in records[f].nodes
                    if n.node == "w" and n.state == scheduler_pb2.NODE_STATE_RUNNING
                )
                if running >= peak_jobs:
                    peak_jobs, busy = running, max(busy, rss_bytes(slow.pid))
                ended = sum(
                    1
                    for f in flow_ids
                    if records[f].state
                    in (scheduler_pb2.FLOW_STATE_SUCCEEDED, scheduler_pb2.FLOW_STATE_FAILED)
                )
                if ended == len(flow_ids):
                    break
                time.sleep(0.5)
            seconds = now() - started
            succeeded = sum(
                1 for f in flow_ids if records[f].state == scheduler_pb2.FLOW_STATE_SUCCEEDED
            )
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    emit(
        {
            "bench": "many_jobs",
            "jobs": args.jobs,
            "succeeded": succeeded,
            "peak_jobs": peak_jobs,
            "idle_rss_mb": round(idle / 2**20, 1),
            "busy_rss_mb": round(busy / 2**20, 1),
            "rss_per_job_kb": round((busy - idle) / max(peak_jobs, 1) / 1024, 1),
            "seconds": round(seconds, 1),
        }
    )


if __name__ == "__main__":
    main()
