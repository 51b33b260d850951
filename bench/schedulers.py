"""Shared by the benchmarks of several schedulers: `dagyo scheduler` processes on one vhost
sharing one PostgreSQL database (DAGYO_STATE), and what they hold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from common import ROOT

READY = "dagyo scheduler: gRPC on"


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class SchedulerProcess:
    """One `dagyo scheduler` process, started and ready (its gRPC listening)."""

    def __init__(self, env: dict[str, str], catalogue: Path) -> None:
        self.address = free_address()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from scheduler.cli import main; main()", "scheduler"],
            env={
                **env,
                "DAGYO_SCHEDULER": self.address,
                "DAGYO_PROGDEFS": str(catalogue),
                "DAGYO_UI": "off",
                "DAGYO_METRICS_PORT": "0",
                "PYTHONPATH": str(ROOT),
            },
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if READY in line:
                break
        else:
            raise RuntimeError(f"a scheduler did not start: exit {self.process.wait()}")
        os.set_blocking(self.process.stderr.fileno(), False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def drain(self) -> None:
        """Read what it wrote since (so its pipe never fills)."""
        assert self.process.stderr is not None
        try:
            self.process.stderr.read()
        except (OSError, TypeError):
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def lease_owner_pid(state: str, flow_id: str) -> int:
    """The pid of the scheduler holding the lease of the flow's shard."""
    with psycopg.connect(state, autocommit=True) as db:
        row = db.execute(
            "SELECT owner FROM flow_leases WHERE flow_id = %s", (f"shard-{flow_id[0]}",)
        ).fetchone()
    assert row is not None
    return int(str(row[0]).split("-")[-2])


def owners(state: str) -> set[str]:
    """The owners holding the 16 shards' leases now."""
    with psycopg.connect(state, autocommit=True) as db:
        rows = db.execute(
            "SELECT owner FROM flow_leases WHERE flow_id LIKE 'shard-%%' "
            "AND expires > extract(epoch FROM clock_timestamp())"
        ).fetchall()
    return {str(row[0]) for row in rows}


def database_pids(state: str) -> list[int | str]:
    """The server processes serving the database's sessions now."""
    database = state.rpartition("/")[2]
    with psycopg.connect(state, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [int(row[0]) for row in rows]


def wait_shared(state: str, count: int, timeout_s: float = 120) -> None:
    """Wait until ``count`` schedulers hold shards."""
    deadline = time.monotonic() + timeout_s
    while len(owners(state)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the shards were not shared by {count} schedulers")
        time.sleep(0.2)
