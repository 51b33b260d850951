"""The fake executor, and the helpers the scheduler service tests play flows with.

The fake executor plays an executor's side of docs/protocol.md on raw pika, step by step
as each test tells it, so each test decides exactly when a job starts, sends, panics,
goes silent or ends. ``Client`` starts a scheduler in-process and talks gRPC to it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pika
import pika.exceptions
from google.protobuf.message import Message

from executor.core.constants import (
    EVENTS_EXCHANGE,
    FAILURES_EXCHANGE,
    FLOW_PREFIX,
    STOP_EXCHANGE,
    failure_key,
    job_ended_key,
    job_started_key,
)
from executor.core.progdef import load_catalogue
from executor.pb.dagyo.types_pb2 import Text
from executor.pb.dagyo.v1.events_pb2 import Event, Stop
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_PANIC,
    FailureReport,
)
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.conftest import rabbitmqctl, vhost_of
from tests.waiting import eventually

# Generous: only catches hangs.
WAIT_S = 20.0
HEARTBEAT_S = 0.3

EMIT = {
    "name": "emit",
    "inputs": {"n": "dagyo.types.Int64"},
    "outputs": {"items": "dagyo.types.Text"},
    "run": "main:run",
}
RELAY = {
    "name": "relay",
    "inputs": {"text": "dagyo.types.Text"},
    "outputs": {"text": "dagyo.types.Text"},
    "run": "main:run",
}
FLOW = {
    "name": "fake",
    "nodes": {"a": {"progdef": "emit"}, "b": {"progdef": "relay"}},
    "edges": [{"from": "a.items", "to": "b.text"}],
    "consts": [{"to": "a.n", "values": [{"value": 3}]}],
    "exports": {"out": "b.text"},
}


# --- the broker -----------------------------------------------------------------------------


def queue_exists(url: str, name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404
        return False
    finally:
        connection.close()


def connections(vhost: str) -> set[str]:
    """The broker's connections (their pids) on ``vhost``, from rabbitmqctl."""
    out = rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "vhost")
    return {line.split("\t")[0] for line in out.splitlines() if line.endswith("\t" + vhost)}


def queues_by_flow(url: str) -> dict[str, set[str]]:
    """Every ``dagyo.flow.*`` queue of the vhost of ``url``: flow id -> the rest of each
    name (``in.b.text``, ``export.out``), from rabbitmqctl."""
    out = rabbitmqctl("list_queues", "-p", vhost_of(url), "-q", "--no-table-headers", "name")
    flows: dict[str, set[str]] = {}
    for name in out.split():
        if name.startswith(FLOW_PREFIX + "."):
            flow_id, _, rest = name[len(FLOW_PREFIX) + 1 :].partition(".")
            flows.setdefault(flow_id, set()).add(rest)
    return flows


def flow_queues(job: Job) -> set[str]:
    queues: set[str] = set()
    queues.update(spec.queue for spec in job.inputs.values() if spec.queue)
    for spec in job.outputs.values():
        queues.update(spec.queues)
    return queues


def assert_no_queue_left(url: str, jobs: list[Job]) -> None:
    left = sorted(q for job in jobs for q in flow_queues(job) if queue_exists(url, q))
    assert left == [], f"queues of the flow left in the broker: {left}"


# --- the fake executor ----------------------------------------------------------------------


class FakeExecutor:
    """An executor's side of the protocol on raw pika, one step at a time."""

    def __init__(self, url: str, mailboxes: list[str], *, slots: int = 0) -> None:
        self.id = f"fake-{uuid.uuid4().hex[:6]}"
        self.url = url
        self.mailboxes = mailboxes
        # With slots, its heartbeats say it runs that many jobs of each mailbox at once
        # (as a real executor's do); without, they name no mailbox (capacity unknown).
        self.slots = slots
        # (flow id, node) -> monotonic time since which the job waits on a full stream.
        self.blocked: dict[tuple[str, str], float] = {}
        # (flow id, node) -> (items sent per output port, items received per input port),
        # as its heartbeats say.
        self.counts: dict[tuple[str, str], tuple[dict[str, int], dict[str, int]]] = {}
        # (flow id, node) of the jobs it started and has not ended: its heartbeats name them.
        self.running: set[tuple[str, str]] = set()
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.stops: queue.Queue[Stop] = queue.Queue()
        self.heartbeating = True
        self._commands: queue.Queue[tuple[Callable[[Any], None], threading.Event]] = queue.Queue()
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> FakeExecutor:
        self._thread.start()
        assert self._ready.wait(WAIT_S), "the fake executor did not connect"
        return self

    def close(self, *, delete_mailboxes: bool = True) -> None:
        if delete_mailboxes:
            self._do(lambda ch: [ch.queue_delete(m) for m in self.mailboxes])
        self._closing.set()
        self._thread.join(WAIT_S)

    def _main(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        channel.exchange_declare(FAILURES_EXCHANGE, "topic", durable=True)
        channel.exchange_declare(STOP_EXCHANGE, "fanout", durable=True)
        stop_queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(stop_queue, STOP_EXCHANGE)
        channel.basic_consume(
            stop_queue, lambda ch, m, p, body: self.stops.put(Stop.FromString(body)), auto_ack=True
        )
        channel.basic_qos(prefetch_count=10)
        for mailbox in self.mailboxes:
            channel.queue_declare(mailbox, durable=True)
            channel.basic_consume(mailbox, self._on_job, auto_ack=False)
        self._ready.set()
        last_beat = 0.0
        while not self._closing.is_set():
            connection.process_data_events(time_limit=0.05)
            if self.heartbeating and time.monotonic() - last_beat > HEARTBEAT_S:
                last_beat = time.monotonic()
                for beat in self._heartbeats():
                    self._event(channel, "heartbeat." + beat.executor, heartbeat=beat)
            while not self._commands.empty():
                command, done = self._commands.get()
                command(channel)
                done.set()
        connection.close()

    def _on_job(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)  # acked at start: never redelivered
        self.jobs.put(Job.FromString(body))

    def _heartbeats(self) -> list[Any]:
        from executor.pb.dagyo.v1.events_pb2 import Heartbeat, JobRef

        now = time.monotonic()
        jobs = [
            JobRef(flow_id=flow_id, node=node, blocked_s=now - since)
            for (flow_id, node), since in list(self.blocked.items())
        ]
        jobs += [
            JobRef(flow_id=flow_id, node=node, items_sent=sent, items_received=received)
            for (flow_id, node), (sent, received) in list(self.counts.items())
        ]
        named = {(job.flow_id, job.node) for job in jobs}
        jobs += [
            JobRef(flow_id=flow_id, node=node)
            for flow_id, node in list(self.running)
            if (flow_id, node) not in named
        ]
        beats = [Heartbeat(executor=self.id, progdef="emit", jobs=jobs)]
        if self.slots:
            beats += [
                Heartbeat(executor=f"{self.id}-{i}", mailbox=mailbox, slots=self.slots)
                for i, mailbox in enumerate(self.mailboxes)
            ]
        return beats

    def _event(self, channel: Any, key: str, **kind: Message) -> None:
        event = Event(time=time.time(), **kind)  # type: ignore[arg-type]
        channel.basic_publish(EVENTS_EXCHANGE, key, event.SerializeToString())

    def _do(self, command: Callable[[Any], Any]) -> None:
        done = threading.Event()
        self._commands.put((command, done))
        assert done.wait(WAIT_S), "the fake executor is stuck"

    # --- what a test tells it to do --------------------------------------------------------

    def next_jobs(self, count: int) -> dict[str, Job]:
        jobs = {}
        for _ in range(count):
            job = self.jobs.get(timeout=WAIT_S)
            jobs[job.node] = job
        return jobs

    def start_job(self, job: Job) -> None:
        from executor.pb.dagyo.v1.events_pb2 import JobRef, JobStarted

        started = JobStarted(job=JobRef(flow_id=job.flow_id, node=job.node), executor=self.id)
        self.running.add((job.flow_id, job.node))
        self._do(lambda ch: self._event(ch, job_started_key(job.flow_id), started=started))

    def block(self, job: Job) -> None:
        """From now on its heartbeats say the job waits on a full output stream."""
        self.blocked[(job.flow_id, job.node)] = time.monotonic()

    def report(
        self, job: Job, sent: dict[str, int] | None = None, received: dict[str, int] | None = None
    ) -> None:
        """From now on its heartbeats say the job sent and received these items so far."""
        self.counts[(job.flow_id, job.node)] = (sent or {}, received or {})

    def end_job(
        self,
        job: Job,
        items_sent: dict[str, int] | None = None,
        items_received: dict[str, int] | None = None,
    ) -> None:
        from executor.pb.dagyo.v1.events_pb2 import JobEnded, JobRef

        self.counts.pop((job.flow_id, job.node), None)
        self.running.discard((job.flow_id, job.node))
        ended = JobEnded(
            job=JobRef(flow_id=job.flow_id, node=job.node),
            executor=self.id,
            items_sent=items_sent or {},
            items_received=items_received or {},
        )
        self._do(lambda ch: self._event(ch, job_ended_key(job.flow_id), ended=ended))

    def end_job_as(self, job: Job, outcome: str, reason: str) -> None:
        """Report the end of a job that did not end by returning (``JOB_STOPPED``, …)."""
        from executor.pb.dagyo.v1.events_pb2 import JobEnded, JobRef

        self.running.discard((job.flow_id, job.node))
        ended = JobEnded(
            job=JobRef(flow_id=job.flow_id, node=job.node),
            executor=self.id,
            outcome=outcome,
            reason=reason,
        )
        self._do(lambda ch: self._event(ch, job_ended_key(job.flow_id), ended=ended))

    def send(self, job: Job, port: str, items: list[bytes], *, seq: int, end: bool = False) -> None:
        typename = job.outputs[port].typename
        token = job.outputs[port].token  # a real producer's frames carry it
        frame = Frame(
            items=items, seq=seq, end_of_stream=end, typename=typename, token=token
        ).SerializeToString()

        def publish(channel: Any) -> None:
            for target in job.outputs[port].queues:
                _publish_when_there_is_room(channel, target, frame)

        self._do(publish)

    def panic(self, job: Job, error: str, traceback: str) -> FailureReport:
        report = FailureReport(
            flow_id=job.flow_id,
            node=job.node,
            progdef=job.progdef,
            executor=self.id,
            error=error,
            traceback=traceback,
            kind=FAILURE_KIND_PANIC,
            time=time.time(),
        )
        self._do(
            lambda ch: ch.basic_publish(
                FAILURES_EXCHANGE, failure_key(job.flow_id), report.SerializeToString()
            )
        )
        return report

    def stop_for(self, flow_id: str) -> Stop:
        def next_stop() -> Stop | None:
            try:
                return self.stops.get(timeout=0.2)
            except queue.Empty:
                return None

        stop = eventually(
            next_stop,
            WAIT_S,
            until=lambda stop: stop is not None and stop.flow_id == flow_id,
            what=f"a stop for flow {flow_id}",
            poll=0,
        )
        assert stop is not None
        return stop


def texts(*values: str) -> list[bytes]:
    return [Text(text=v).SerializeToString() for v in values]


# --- the scheduler --------------------------------------------------------------------------


def mailboxes(catalogue: Path) -> list[str]:
    return sorted(p.mailbox for p in load_catalogue(catalogue).values())


class Client:
    """A scheduler started for one test, and a stub to talk to it."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.scheduler = Scheduler(settings)
        self.scheduler.start()
        self.channel = grpc.insecure_channel(self.scheduler.address)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.scheduler.stop()

    def submit(self, flow: dict[str, Any] = FLOW, **options: Any) -> str:
        request = pb.SubmitRequest(flow_json=json.dumps(flow), source="fake.json", **options)
        return str(self.stub.Submit(request, timeout=WAIT_S).flow_id)

    def watch(self, flow_id: str) -> list[pb.WatchEvent]:
        return list(self.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S))

    def get(self, flow_id: str) -> pb.FlowRecord:
        return self.stub.Get(pb.GetRequest(flow_id=flow_id), timeout=WAIT_S)


def exports_of(events: list[pb.WatchEvent]) -> list[tuple[str, Any]]:
    return [
        (e.export.export, json.loads(e.export.value_json))
        for e in events
        if e.WhichOneof("kind") == "export"
    ]


def end_of(events: list[pb.WatchEvent]) -> pb.FlowRecord:
    assert events and events[-1].WhichOneof("kind") == "end", "the watch did not end"
    return events[-1].end


def run_to_success(fake: FakeExecutor, jobs: dict[str, Job]) -> None:
    """Play both jobs of FLOW to a clean end: b exports x0, x1, x2."""
    for job in jobs.values():
        fake.start_job(job)
    fake.send(jobs["a"], "items", texts("x0", "x1", "x2"), seq=0, end=True)
    fake.end_job(jobs["a"], {"items": 3})
    fake.send(jobs["b"], "text", texts("x0", "x1"), seq=0)
    fake.send(jobs["b"], "text", texts("x2"), seq=1, end=True)
    fake.end_job(jobs["b"], {"text": 3})


EXPECTED = [("out", {"text": "x0"}), ("out", {"text": "x1"}), ("out", {"text": "x2"})]


TICK = {
    "name": "tick",
    "description": "Emits three ticks; takes no input.",
    "inputs": {},
    "outputs": {"ticks": "dagyo.types.Int64"},
    "run": "main:run",
}


def _publish_when_there_is_room(channel: Any, queue_name: str, frame: bytes) -> None:
    """Publish one frame as a real producer does: a full stream queue (reject-publish)
    nacks it, and the frame is sent again once the consumer made room."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            channel.basic_publish("", queue_name, frame, mandatory=True)
            return
        except pika.exceptions.NackError:
            if time.monotonic() > deadline:
                raise
            channel.connection.sleep(0.05)
