"""Wide flows: one source feeding --width void_sinks, embedded and on a local cluster.

Times `dagyo run` of the flow in one process, then, on a local cluster whose void_sink
executors hold every job between them (at most 10 000 each), the Submit call and the flow
from submit to its end. Prints one JSON line:

    {"width": 3000, "embedded_s": …, "submit_s": …, "cluster_s": …, "state": "succeeded"}

Usage:
    python bench/fanout.py --width 1000
    python bench/fanout.py --width 3000 --no-cluster
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, delete_mailboxes, emit, now, start_cluster

from executor.core.progdef import MAX_JOBS_LIMIT
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2

ENDED = (
    scheduler_pb2.FLOW_STATE_SUCCEEDED,
    scheduler_pb2.FLOW_STATE_FAILED,
    scheduler_pb2.FLOW_STATE_CANCELLED,
)


def fan_out(width: int) -> dict[str, Any]:
    """source(3) feeding ``width`` void_sinks."""
    nodes: dict[str, Any] = {"names": {"progdef": "source"}}
    nodes.update({f"s{i}": {"progdef": "void_sink"} for i in range(width)})
    return {
        "name": f"fan-out-{width}",
        "nodes": nodes,
        "edges": [{"from": "names.src", "to": f"s{i}.sink"} for i in range(width)],
        "consts": [{"to": "names.count", "values": [3]}],
    }


def embedded(flow: dict[str, Any]) -> float:
    """Seconds `dagyo run` of the flow takes, as a whole command."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(flow, file)
    started = now()
    subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "run", file.name],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    Path(file.name).unlink()
    return now() - started


def cluster(flow: dict[str, Any], width: int) -> dict[str, Any]:
    """Submit seconds, submit-to-end seconds and end state on a local cluster."""
    # An executor holds at most MAX_JOBS_LIMIT jobs: enough executors for every sink.
    executors = -(-(width + 1) // MAX_JOBS_LIMIT)
    slots = -(-(width + 1) // executors)
    local = start_cluster(
        ("source", "void_sink"),
        executors_per_progdef=executors,
        extra_env={"DAGYO_MAX_JOBS": str(slots)},
    )

    try:
        with SchedulerClient(local.address) as client:
            started = now()
            flow_id = client.submit(json.dumps(flow))
            submitted = now() - started
            record = client.get(flow_id)
            while record.state not in ENDED:
                time.sleep(0.02)
                record = client.get(flow_id)
            ended = now() - started
        state = scheduler_pb2.FlowState.Name(record.state).removeprefix("FLOW_STATE_").lower()
        figures = {"submit_s": round(submitted, 2), "cluster_s": round(ended, 2), "state": state}
        if record.failure.error:
            figures["error"] = record.failure.error
        return figures
    finally:
        local.stop()
        delete_mailboxes(local)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--no-cluster", action="store_true", help="time the embedded run only")
    args = parser.parse_args()
    flow = fan_out(args.width)
    figures: dict[str, Any] = {"width": args.width, "embedded_s": round(embedded(flow), 2)}
    if not args.no_cluster:
        figures.update(cluster(flow, args.width))
    emit(figures)


if __name__ == "__main__":
    main()
