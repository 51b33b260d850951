"""Several `dagyo scheduler` processes on one fresh vhost and one fresh PostgreSQL
database, with an executor process per progdef of the hello flow (docs/scaling.md,
Several schedulers)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import psycopg

from executor.core.constants import SHARDS
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.cluster import copy_catalogue, own_vhost
from tests.commands import free_address, read_until, start_executor
from tests.conftest import EXAMPLES, ROOT
from tests.postgres import fresh_database
from tests.waiting import eventually

HELLO = (EXAMPLES / "hello.json").read_text()
LEASE_S = 3.0  # short, yet long enough for the ticks of a loaded machine
ENDED = (pb.FLOW_STATE_SUCCEEDED, pb.FLOW_STATE_FAILED, pb.FLOW_STATE_CANCELLED)


def greetings(count: int) -> list[str]:
    """The exports of a hello flow of ``count`` names."""
    return [f"hello name-{i}" for i in range(count)]


def texts(record: pb.FlowRecord) -> list[str]:
    """The texts a hello flow's record kept as exports, in order."""
    return [json.loads(e.value_json)["text"] for e in record.exports]


class Scheduler:
    """One `dagyo scheduler` process; its stderr is kept (read on a thread)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.address = free_address("127.0.0.1")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from scheduler.cli import main; main()", "scheduler"],
            env={**env, "DAGYO_SCHEDULER": self.address},
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        read_until(self.process, "dagyo scheduler: gRPC on", timeout_s=60)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.client = SchedulerClient(self.address, call_timeout_s=60)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Schedulers:
    """The schedulers, the executors, the vhost and the database of one test."""

    def __init__(self, amqp_url: str, state: str, catalogue: Path) -> None:
        self.state = state
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DAGYO_QUEUE": amqp_url,
            "DAGYO_STATE": state,
            "DAGYO_PROGDEFS": str(catalogue),
            "DAGYO_LEASE_S": str(LEASE_S),
            "DAGYO_UI": "off",
            "DAGYO_METRICS_PORT": "0",
            "DAGYO_EXPORT_CAP_BYTES": str(16 * 1024 * 1024),
            "DAGYO_HEARTBEAT_INTERVAL_S": "0.5",
            # A job's end held by a paused owner reaches the next one after the pause: give
            # it longer than the pause and the takeover before judging the job lost.
            "DAGYO_HEARTBEAT_TIMEOUT_S": "30",
        }
        self.catalogue = catalogue
        self.schedulers: list[Scheduler] = []
        self.executors: list[subprocess.Popen[str]] = []

    def start_executors(self) -> None:
        for name in ("source", "greet", "void_sink"):
            executor = start_executor(
                self.catalogue / name,
                DAGYO_QUEUE=self.env["DAGYO_QUEUE"],
                DAGYO_HEARTBEAT_INTERVAL_S="0.5",
            )
            self.executors.append(executor)
            line = read_until(executor, "pulling", timeout_s=60)
            threading.Thread(target=_drain, args=(executor,), daemon=True).start()
            mailbox = line.split("pulling ", 1)[1].split()[0]
            eventually(lambda m=mailbox: self._consumed(m), 60, what=f"{mailbox} consumed")

    def _consumed(self, mailbox: str) -> bool:
        connection = pika.BlockingConnection(pika.URLParameters(self.env["DAGYO_QUEUE"]))
        try:
            declared = connection.channel().queue_declare(mailbox, passive=True)
            return bool(declared.method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            connection.close()

    def start(self) -> Scheduler:
        scheduler = Scheduler(self.env)
        self.schedulers.append(scheduler)
        return scheduler

    def owner_pid(self, flow_id: str) -> int:
        """The pid of the scheduler holding the lease of the flow's shard."""
        owner, _ = self.lease(f"shard-{flow_id[0]}")
        return int(owner.split("-")[-2])

    def lease(self, name: str) -> tuple[str, int]:
        with psycopg.connect(self.state, autocommit=True) as db:
            row = db.execute(
                "SELECT owner, epoch FROM flow_leases WHERE flow_id = %s", (name,)
            ).fetchone()
        assert row is not None, name
        return str(row[0]), int(row[1])

    def settled(self, count: int) -> bool:
        """True once ``count`` schedulers hold their fair share of the 16 shards each."""
        with psycopg.connect(self.state, autocommit=True) as db:
            rows = db.execute(
                "SELECT owner, count(*) FROM flow_leases WHERE flow_id LIKE 'shard-%%' "
                "AND expires > extract(epoch FROM clock_timestamp()) GROUP BY owner"
            ).fetchall()
        share = -(-SHARDS // count)
        return len(rows) == count and all(int(n) <= share for _, n in rows)

    def execute(self, statement: str, *args: object) -> None:
        with psycopg.connect(self.state, autocommit=True) as db:
            db.execute(statement, args)  # type: ignore[arg-type]

    def by_pid(self, pid: int) -> Scheduler:
        return next(s for s in self.schedulers if s.pid == pid)

    def others(self, pid: int) -> list[Scheduler]:
        return [s for s in self.schedulers if s.pid != pid and s.process.poll() is None]

    def close(self) -> None:
        for scheduler in self.schedulers:
            scheduler.stop()
            # Kept with the test's files: what each scheduler said, when a test fails.
            (self.catalogue.parent / f"scheduler-{scheduler.pid}.log").write_text(scheduler.log())
        for executor in self.executors:
            if executor.poll() is None:
                executor.terminate()
            try:
                executor.wait(30)
            except subprocess.TimeoutExpired:
                executor.kill()
                executor.wait()


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stderr is not None
    for _ in process.stderr:
        pass


@contextlib.contextmanager
def schedulers(broker_url: str, workdir: Path, count: int) -> Iterator[Schedulers]:
    """``count`` schedulers and the hello flow's executors on a fresh vhost and database."""
    catalogue = copy_catalogue(workdir / "progdefs", ("source", "greet", "void_sink"))
    with own_vhost(broker_url) as vhost, fresh_database() as state:
        cluster = Schedulers(vhost, state, catalogue)
        try:
            for _ in range(count):
                cluster.start()
            cluster.start_executors()
            eventually(lambda: cluster.settled(count), 120, what="the shards shared out")
            yield cluster
        finally:
            cluster.close()
