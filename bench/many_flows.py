"""Many small flows at once: --flows hello flows submitted concurrently to one cluster.

Prints one JSON line: how many succeeded, the wall time from the first submit to the last
flow's end, the flow queues left in the broker (must be 0) and the scheduler's RSS:

    {"flows": 1000, "succeeded": 1000, "seconds": …, "flows_per_s": …,
     "queues_left": 0, "scheduler_rss_mb": …}

Usage:
    python bench/many_flows.py --flows 1000
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from common import (
    delete_mailboxes,
    emit,
    flow_queues_left,
    hello_flow,
    now,
    rss_bytes,
    start_cluster,
)

from executor.pb.dagyo.v1 import scheduler_pb2
from scheduler.client.api import SchedulerClient

ENDED = {
    scheduler_pb2.FLOW_STATE_SUCCEEDED,
    scheduler_pb2.FLOW_STATE_FAILED,
    scheduler_pb2.FLOW_STATE_CANCELLED,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument(
        "--submitters", type=int, default=16, help="client threads submitting at once"
    )
    args = parser.parse_args()
    cluster = start_cluster(("source", "greet", "void_sink"))
    flow = json.dumps(hello_flow())
    try:
        with SchedulerClient(cluster.address) as client:
            started = now()
            with ThreadPoolExecutor(args.submitters) as pool:
                flow_ids = list(pool.map(lambda _: client.submit(flow), range(args.flows)))
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
        rss = rss_bytes()
    finally:
        cluster.stop()
        delete_mailboxes(cluster)
    emit(
        {
            "bench": "many_flows",
            "flows": args.flows,
            "succeeded": states.get(scheduler_pb2.FLOW_STATE_SUCCEEDED, 0),
            "seconds": round(seconds, 2),
            "flows_per_s": round(args.flows / seconds, 1),
            "queues_left": flow_queues_left(),
            "scheduler_rss_mb": round(rss / 2**20, 1),
            **({"failures": dict(failures)} if failures else {}),
        }
    )


if __name__ == "__main__":
    main()
