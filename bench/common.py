"""Shared by the benchmarks: a private copy of the catalogue and a local cluster on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from executor.constants import DEFAULT_QUEUE_URL  # noqa: E402
from scheduler.local_cluster import LocalCluster, private_catalogue  # noqa: E402

QUEUE_URL = os.environ.get("DAGYO_QUEUE", DEFAULT_QUEUE_URL)


def start_cluster(names: tuple[str, ...], **options: Any) -> LocalCluster:
    """A started local cluster serving ``names``; stop it with ``.stop()``."""
    catalogue = Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "progdefs"
    private_catalogue(ROOT / "progdefs", catalogue, names, tag="bench")
    cluster = LocalCluster(progdefs_dir=catalogue, queue_url=QUEUE_URL, **options)
    cluster.start()
    return cluster


def delete_mailboxes(cluster: LocalCluster) -> None:
    """Delete the private mailboxes once the executors are gone."""
    cluster.delete_mailboxes()


def flow_queues_left() -> int:
    """How many ``dagyo.flow.*`` queues the vhost of DAGYO_QUEUE holds (rabbitmqctl)."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(QUEUE_URL).path.lstrip("/")) or "/"
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for name in out.split() if name.startswith("dagyo.flow."))


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def chain_flow(count: int, *, name: str = "stream") -> dict[str, Any]:
    """source(count) -> greet -> count, exporting the total."""
    return {
        "name": name,
        "nodes": {
            "names": {"progdef": "source"},
            "hi": {"progdef": "greet"},
            "total": {"progdef": "count"},
        },
        "edges": [
            {"from": "names.src", "to": "hi.name"},
            {"from": "hi.greeting", "to": "total.items"},
        ],
        "consts": [{"to": "names.count", "values": [{"value": count}]}],
        "exports": {"total": "total.total"},
    }


def hello_flow() -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "hello.json").read_text())


def emit(figures: dict[str, Any]) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps(figures), flush=True)


def now() -> float:
    return time.perf_counter()
