"""A handler that waits 50 ms per item (a remote call): one at a time vs 64 in flight.

Flow: source(count=N) -> FETCH -> count, one job per node, where FETCH is either the
sample ``fetch_like`` (``async def handler`` awaiting 50 ms, ``"concurrency": 64``) or
its plain twin written here, ``fetch_like_sync`` (``def handler`` sleeping 50 ms,
``"concurrency"`` 1, as every function progdef ran before). Each runs on a local cluster
(the scheduler and one executor per progdef on DAGYO_QUEUE; submit -> flow finished) and
on the embedded runner in this process. The plain one gets --sync-items (it manages 20
items/s whatever the machine). With --idle-jobs J, it also measures what a job waiting in
its handler costs its executor: J jobs of each kind, every one inside its handler, the
executor's RSS before and after. Prints one JSON line:

    {"items": 5000, "async_items_per_s": …, "embedded_async_items_per_s": …,
     "sync_items_per_s": …, "embedded_sync_items_per_s": …, "speedup": …,
     "idle_async_kb_per_job": …, "idle_sync_kb_per_job": …}

``speedup`` is the cluster's async items/s over its plain items/s.

Usage:
    python bench/async_handler.py --items 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import QUEUE_URL, ROOT, emit, now, rss_bytes

from executor.core.progdef import load_catalogue
from scheduler.client.api import SchedulerClient
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from scheduler.local_cluster import LocalCluster, private_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2

WAITING = (scheduler_pb2.FLOW_STATE_PENDING, scheduler_pb2.FLOW_STATE_RUNNING)

SYNC_CODE = '''"""fetch_like_sync: fetch_like as a plain handler, one item at a time."""

import os
import time

from executor.types import Text

DELAY_S = float(os.environ.get("FETCH_LIKE_DELAY_MS", "50")) / 1000


def handler(ctx, item):
    time.sleep(DELAY_S)
    return Text(text=f"fetched {item.text}")
'''

# Long enough that every idle job is still inside its handler when the RSS is read.
IDLE_WAIT_MS = 30_000


def catalogue(folder: Path) -> Path:
    """A private catalogue: source, count, fetch_like and its plain twin."""
    private_catalogue(ROOT / "progdefs", folder, ("source", "count", "fetch_like"), tag="bench")
    twin = folder / "fetch_like_sync"
    shutil.copytree(folder / "fetch_like", twin)
    document = json.loads((twin / "progdef.json").read_text())
    document.update(name="fetch_like_sync", concurrency=1)
    del document["init"]
    (twin / "progdef.json").write_text(json.dumps(document, indent=2))
    (twin / "main.py").write_text(SYNC_CODE)
    return folder


def flow(progdef: str, count: int) -> dict[str, Any]:
    """source(count) -> progdef -> count, exporting the total."""
    return {
        "name": f"bench-{progdef}".replace("_", "-"),
        "nodes": {
            "names": {"progdef": "source"},
            "fetch": {"progdef": progdef},
            "total": {"progdef": "count"},
        },
        "edges": [
            {"from": "names.src", "to": "fetch.url"},
            {"from": "fetch.page", "to": "total.items"},
        ],
        "consts": [{"to": "names.count", "values": [{"value": count}]}],
        "exports": {"total": "total.total"},
    }


def cluster_once(client: SchedulerClient, progdef: str, n: int) -> float:
    started = now()
    flow_id = client.submit(json.dumps(flow(progdef, n)))
    exports = [e.export for e in client.watch(flow_id) if e.WhichOneof("kind") == "export"]
    seconds = now() - started
    total = json.loads(exports[0].value_json)["value"] if exports else None
    if total != str(n):
        sys.exit(f"{progdef} on the cluster ended {client.get(flow_id).state}, total {total}")
    return seconds


def embedded_once(folder: Path, progdef: str, n: int) -> float:
    checked = check_flow(parse_flow(json.dumps(flow(progdef, n))), load_catalogue(folder))
    totals: list[int] = []
    runner = EmbeddedRunner(checked, on_export=lambda _, m: totals.append(m.value))
    started = now()
    result = runner.run()
    seconds = now() - started
    if result.state != "succeeded" or totals != [n]:
        sys.exit(f"{progdef} embedded ended {result.state} with {totals}")
    return seconds


def idle_kb_per_job(folder: Path, jobs: int) -> dict[str, float]:
    """KB of its executor's RSS per job waiting inside its handler, by progdef."""
    cluster = LocalCluster(
        progdefs_dir=folder,
        queue_url=QUEUE_URL,
        extra_env={"FETCH_LIKE_DELAY_MS": str(IDLE_WAIT_MS), "DAGYO_MAX_JOBS": str(jobs)},
    )
    cluster.start()
    kb: dict[str, float] = {}
    try:
        with SchedulerClient(cluster.address) as client:
            for progdef in ("fetch_like", "fetch_like_sync"):
                (process,) = cluster.executors[progdef]
                before = rss_bytes(process.pid)
                threads = len(list(Path(f"/proc/{process.pid}/task").iterdir()))
                ids = [client.submit(json.dumps(flow(progdef, 1))) for _ in range(jobs)]
                deadline = time.monotonic() + IDLE_WAIT_MS / 2000
                # Every job holds its thread once it runs: wait until all do, then a little.
                while time.monotonic() < deadline:
                    if len(list(Path(f"/proc/{process.pid}/task").iterdir())) >= threads + jobs:
                        break
                    time.sleep(0.2)
                time.sleep(2.0)
                kb[progdef] = round((rss_bytes(process.pid) - before) / jobs / 1024, 1)
                for flow_id in ids:  # each ends once its item has waited IDLE_WAIT_MS
                    while client.get(flow_id).state in WAITING:
                        time.sleep(0.5)
    finally:
        cluster.stop()
        cluster.delete_mailboxes()
    return kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000, help="items of the async runs")
    parser.add_argument("--sync-items", type=int, default=200, help="items of the plain runs")
    parser.add_argument("--idle-jobs", type=int, default=0, help="measure idle jobs' RSS too")
    parser.add_argument("--no-embedded", action="store_true", help="the cluster only")
    args = parser.parse_args()
    folder = catalogue(Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "progdefs")
    figures: dict[str, Any] = {"bench": "async_handler", "items": args.items}
    figures["sync_items"] = args.sync_items
    cluster = LocalCluster(progdefs_dir=folder, queue_url=QUEUE_URL)
    cluster.start()
    try:
        with SchedulerClient(cluster.address) as client:
            cluster_once(client, "fetch_like", 64)  # warm up: imports, channels, the loop
            cluster_once(client, "fetch_like_sync", 2)
            seconds = cluster_once(client, "fetch_like", args.items)
            figures["async_items_per_s"] = round(args.items / seconds)
            seconds = cluster_once(client, "fetch_like_sync", args.sync_items)
            figures["sync_items_per_s"] = round(args.sync_items / seconds, 1)
    finally:
        cluster.stop()
        cluster.delete_mailboxes()
    figures["speedup"] = round(figures["async_items_per_s"] / figures["sync_items_per_s"], 1)
    if not args.no_embedded:
        embedded_once(folder, "fetch_like", 64)
        seconds = embedded_once(folder, "fetch_like", args.items)
        figures["embedded_async_items_per_s"] = round(args.items / seconds)
        seconds = embedded_once(folder, "fetch_like_sync", args.sync_items)
        figures["embedded_sync_items_per_s"] = round(args.sync_items / seconds, 1)
    if args.idle_jobs:
        kb = idle_kb_per_job(folder, args.idle_jobs)
        figures["idle_jobs"] = args.idle_jobs
        figures["idle_async_kb_per_job"] = kb["fetch_like"]
        figures["idle_sync_kb_per_job"] = kb["fetch_like_sync"]
    emit(figures)


if __name__ == "__main__":
    main()
