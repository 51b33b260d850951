"""One executor holding many idle jobs: each waits on an input stream with no item yet.

No scheduler: like the conformance suite, this plays the scheduler's side of the wire
by hand. It starts one executor of `slow` on a mailbox of its own, publishes --jobs job
descriptors, each reading a stream of its own (declared, empty), waits until every job
started, and measures the executor's RSS then against its RSS before the first job. Then
it ends every input stream and waits until every job ended. Prints one JSON line:

    {"bench": "idle_jobs", "jobs": 10000, "started": 10000, "succeeded": 10000,
     "idle_rss_mb": …, "held_rss_mb": …, "rss_per_job_kb": …, "threads": …, "seconds": …}

Usage:
    python bench/many_jobs.py --idle --jobs 10000
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import pika
import pika.exceptions
from common import QUEUE_URL, ROOT, now, rss_bytes

from executor.core.constants import EVENTS_EXCHANGE, FAILURES_EXCHANGE, stream_queue
from executor.core.topology import stream_arguments
from executor.pb.dagyo.types_pb2 import Int64
from executor.pb.dagyo.v1.events_pb2 import Event
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Consts, Input, Job, Output

TEXT = "dagyo.types.Text"
WAIT_S = 600


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


class Side:
    """The scheduler's side: one connection, the queues it declared, the events it heard."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(QUEUE_URL))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        self.channel.exchange_declare(FAILURES_EXCHANGE, "topic", durable=True)
        heard = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(heard, EVENTS_EXCHANGE, "job.*")
        self.ours: set[str] = set()  # the flows of its jobs: others may share the vhost
        self.started: set[str] = set()
        self.ended: dict[str, str] = {}
        self.channel.basic_consume(heard, self._heard, auto_ack=True)
        self.declared: list[str] = []

    def _heard(self, _ch: object, _method: object, _properties: object, body: bytes) -> None:
        event = Event.FromString(body)
        kind = event.WhichOneof("kind")
        if kind not in ("started", "ended") or getattr(event, kind).job.flow_id not in self.ours:
            return
        if kind == "started":
            self.started.add(event.started.job.flow_id)
        elif kind == "ended":
            ended = event.ended
            self.ended[ended.job.flow_id] = (
                f"{ended.outcome}: {ended.reason}" if ended.outcome else ""
            )

    def declare(self, name: str, **arguments: object) -> str:
        self.channel.queue_declare(name, **arguments)  # type: ignore[arg-type]
        self.declared.append(name)
        return name

    def wait(self, done: object, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what}")
            self.connection.process_data_events(0.2)

    def close(self) -> None:
        for name in self.declared:
            self.channel.queue_delete(name)
        self.connection.close()


def run(jobs: int) -> dict:
    """Measure ``jobs`` idle jobs on one executor; the figures as a dict."""
    side = Side()
    version = uuid.uuid4().hex[:16]
    mailbox = side.declare(f"dagyo.mailbox.slow.{version}", durable=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGYO_QUEUE": QUEUE_URL,
        "DAGYO_JOBS": mailbox,
        "DAGYO_MAX_JOBS": str(jobs),
        "DAGYO_METRICS_PORT": "-1",
    }
    log = Path(tempfile.mkdtemp(prefix="dagyo-bench-")) / "executor.log"
    with log.open("w") as out:
        executor = subprocess.Popen(
            [sys.executable, "-m", "executor", str(ROOT / "progdefs" / "slow")],
            env=env,
            cwd=ROOT,
            stderr=out,
        )
    try:
        side.wait(lambda: " ready" in log.read_text() or executor.poll() is not None, "ready")
        if executor.poll() is not None:
            raise SystemExit(f"the executor exited {executor.returncode}:\n{log.read_text()}")
        side.connection.sleep(2.0)
        idle = rss_bytes(executor.pid)
        started_at = now()
        streams = {}
        zero = Input(
            typename="dagyo.types.Int64", consts=Consts(items=[Int64().SerializeToString()])
        )
        for _ in range(jobs):
            flow_id = uuid.uuid4().hex[:12]
            into = side.declare(stream_queue(flow_id, "w", "items"), arguments=stream_arguments(8))
            out = side.declare(stream_queue(flow_id, "v", "sink"), arguments=stream_arguments(8))
            token = uuid.uuid4().hex
            job = Job(
                flow_id=flow_id,
                node="w",
                progdef="slow",
                version=version,
                inputs={
                    "items": Input(typename=TEXT, queue=into, edge="s.src", token=token),
                    "delay_ms": zero,
                },
                outputs={"items": Output(typename=TEXT, queues=[out], token=uuid.uuid4().hex)},
                events_exchange=EVENTS_EXCHANGE,
                failures_exchange=FAILURES_EXCHANGE,
                published=time.time(),
            )
            side.channel.basic_publish("", mailbox, job.SerializeToString(), mandatory=True)
            streams[flow_id] = (into, token)
            side.ours.add(flow_id)
        side.wait(lambda: len(side.started) >= jobs or bool(side.ended), f"{jobs} jobs to start")
        side.connection.sleep(3.0)  # every job parked on its input
        held = rss_bytes(executor.pid)
        threads = threads_of(executor.pid)
        for into, token in streams.values():
            eos = Frame(seq=0, end_of_stream=True, typename=TEXT, token=token)
            side.channel.basic_publish("", into, eos.SerializeToString(), mandatory=True)
        side.wait(lambda: len(side.ended) >= len(side.started), "every job to end")
        seconds = now() - started_at
    finally:
        executor.terminate()
        try:
            executor.wait(60)
        except subprocess.TimeoutExpired:
            executor.kill()
        side.close()
    return {
        "bench": "idle_jobs",
        "jobs": jobs,
        "started": len(side.started),
        "succeeded": sum(1 for outcome in side.ended.values() if outcome == ""),
        "failed": dict(Counter(o for o in side.ended.values() if o).most_common(3)),
        "idle_rss_mb": round(idle / 2**20, 1),
        "held_rss_mb": round(held / 2**20, 1),
        "rss_per_job_kb": round((held - idle) / max(len(side.started), 1) / 1024, 1),
        "threads": threads,
        "seconds": round(seconds, 1),
    }
