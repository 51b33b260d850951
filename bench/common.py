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

from executor.core.brokerurls import split_urls  # noqa: E402
from executor.core.constants import DEFAULT_QUEUE_URL  # noqa: E402
from executor.core.settings import vhost_of  # noqa: E402
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
    """How many ``dagyo.flow.*`` queues the vhost of DAGYO_QUEUE holds (rabbitmqctl, asked
    of the first local node DAGYO_QUEUE names)."""
    vhost = vhost_of(QUEUE_URL)
    nodes = [name for _, name in broker_nodes() if name]
    out = subprocess.run(
        ["rabbitmqctl", *(["-n", nodes[0]] if nodes else []), "list_queues", "-p", vhost]
        + ["-q", "--no-table-headers", "name"],
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


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rabbitmq_nodes() -> list[tuple[int, int, str]]:
    """Every RabbitMQ node of this machine: (pid of its beam.smp, AMQP port, node name; ""
    when it names none), from its process's environment (5672 when it sets no port)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "beam.smp":
                if b"-s\0rabbit\0boot" not in (entry / "cmdline").read_bytes():
                    continue  # a rabbitmqctl run, not a node
                env = dict(
                    line.partition("=")[::2]
                    for line in (entry / "environ").read_text(errors="replace").split("\0")
                )
                port = int(env.get("RABBITMQ_NODE_PORT") or 5672)
                found.append((int(entry.name), port, env.get("RABBITMQ_NODENAME", "")))
        except (OSError, ValueError):
            continue
    return found


def broker_nodes() -> list[tuple[int, str]]:
    """(pid, node name) of the local RabbitMQ nodes whose AMQP port a URL of DAGYO_QUEUE
    names: the broker's processes, one per node of a cluster."""
    ports = {urllib.parse.urlsplit(url).port or 5672 for url in split_urls(QUEUE_URL)}
    return [(pid, name) for pid, port, name in rabbitmq_nodes() if port in ports]


def broker_pids() -> list[int]:
    """The beam.smp processes of DAGYO_QUEUE's nodes that run on this machine."""
    return [pid for pid, _ in broker_nodes()]


class CpuMeter:
    """CPU time used by named processes between ``start`` and ``stop``, per unit of work.

    A process gone before ``stop`` counts as far as it was last read.
    """

    def __init__(self, processes: dict[str, list[int | str]]) -> None:
        self._processes = {name: pids for name, pids in processes.items() if pids}
        self._at_start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        used = {}
        for name, pids in self._processes.items():
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    pass
            used[name] = total
        return used

    def start(self) -> None:
        self._at_start = self._read()

    def stop(self) -> None:
        self.used = {n: v - self._at_start[n] for n, v in self._read().items()}

    def per_unit_ms(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit, by process, and their total."""
        per = {name: round(v * 1000 / units, 2) for name, v in self.used.items()}
        per["total"] = round(sum(self.used.values()) * 1000 / units, 2)
        return per


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


def load_average() -> float:
    """The machine's load average over the last minute: how loaded a figure's run was."""
    return round(os.getloadavg()[0], 2)


def celery_ready(script: str) -> bool:
    """Whether the Celery contender can run (the bench extra); else a line on stderr."""
    import importlib.util

    if importlib.util.find_spec("celery") is None:
        print(
            f"{script}: no Celery, so no Celery contender (pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return False
    return True


def emit(figures: dict[str, Any]) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps(figures), flush=True)


def now() -> float:
    return time.perf_counter()
