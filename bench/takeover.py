"""How long a dead scheduler's flows wait for their new owner: kill → the first event the
new owner handled.

Three schedulers (this process's and two `dagyo scheduler` processes) share one vhost and
one PostgreSQL database (DAGYO_STATE, a database of its own), with the hello flow's
executors. Each round submits a long hello flow to a scheduler process (so it owns it),
waits until its exports flow, kills that scheduler with SIGKILL, and times
until the flow's record in the database moves again: the first job event or export frame
the new owner handled (nothing else writes it). Then the flow is cancelled and a new
scheduler replaces the dead one. Prints one JSON line:

    {"bench": "takeover", "kills": 20, "lease_s": 2.0, "p50_s": …, "max_s": …, "seconds": […]}

Usage:
    DAGYO_STATE=postgresql://postgres@127.0.0.1:5432/bench DAGYO_LEASE_S=2 \\
        python bench/takeover.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import time
from pathlib import Path

from common import emit, hello_flow, now, start_cluster
from schedulers import SchedulerProcess, lease_owner_pid, wait_shared

from executor.core.errors import SchedulerRefused
from executor.core.progdef import catalogue_folders
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

NAMES = 50_000_000  # a flow that outlives every round


def one_kill(state: str, schedulers: list[SchedulerProcess], flow: str) -> float:
    """Kill the owner of a running flow; seconds until its record moves again."""
    first = SchedulerClient(schedulers[0].address)
    for attempt in range(100):  # a scheduler just started hears the executors within 2 s
        try:
            flow_id = first.submit(flow, sets=[f"names.count={NAMES}"])
            break
        except SchedulerRefused:
            if attempt == 99:
                raise
            time.sleep(0.2)
    while not first.get(flow_id).exports:
        time.sleep(0.05)
    owner = next((s for s in schedulers if s.pid == lease_owner_pid(state, flow_id)), None)
    if owner is None:  # its shard moved to the scheduler of this process meanwhile
        first.cancel(flow_id)
        first.close()
        return -1.0
    survivor = next(s for s in schedulers if s is not owner)
    client = SchedulerClient(survivor.address)
    owner.process.send_signal(signal.SIGKILL)
    owner.process.wait()
    killed = now()
    before = client.get(flow_id).SerializeToString()
    while client.get(flow_id).SerializeToString() == before:
        time.sleep(0.02)
    seconds = now() - killed
    record = client.cancel(flow_id)
    assert record.failure.kind == 4 or record.state == pb.FLOW_STATE_CANCELLED
    first.close()
    client.close()
    schedulers.remove(owner)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    state = os.environ.get("DAGYO_STATE", "")
    if not state.startswith(("postgresql://", "postgres://")):
        parser.error("needs DAGYO_STATE, a PostgreSQL URL of a database of its own")
    cluster = start_cluster(("source", "greet", "void_sink"), state_path=state)
    catalogue = Path(catalogue_folders(cluster.settings.progdefs)[0])
    env = dict(os.environ)
    schedulers = [SchedulerProcess(env, catalogue) for _ in range(2)]
    flow = json.dumps(hello_flow())
    seconds: list[float] = []
    try:
        wait_shared(state, 3)
        while len(seconds) < args.kills:
            took = one_kill(state, schedulers, flow)
            if took < 0:
                continue
            seconds.append(took)
            schedulers.append(SchedulerProcess(env, catalogue))
            for each in schedulers:
                each.drain()
            wait_shared(state, 3)
    finally:
        for each in schedulers:
            each.stop()
        cluster.stop()
    emit(
        {
            "bench": "takeover",
            "kills": len(seconds),
            "lease_s": float(os.environ.get("DAGYO_LEASE_S", "10")),
            "p50_s": round(statistics.median(seconds), 2),
            "max_s": round(max(seconds), 2),
            "seconds": [round(s, 2) for s in seconds],
        }
    )


if __name__ == "__main__":
    main()
