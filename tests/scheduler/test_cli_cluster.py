"""The cluster commands: exact output and exit status of `dagyo flow …`, `failures`, `up`.

The scheduler here is a test double serving canned records over real gRPC (the real
service is tested on its own); `failures --follow` runs against the real RabbitMQ.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pika
import pytest

from executor.constants import FAILURES_EXCHANGE
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1 import scheduler_pb2_grpc
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from tests.commands import dagyo, free_address, run_dagyo
from tests.conftest import EXAMPLES, ROOT

HELLO = "a1b2c3d4e5f6"
BOOM = "0badf00d0bad"
STOPPED = "c0ffeec0ffee"
CREATED = 1_700_000_000.0
UNREACHABLE_QUEUE = "amqp://guest:guest@localhost:1/%2F"

TRACEBACK = 'Traceback (most recent call last):\n  File "main.py", line 9\nValueError: panic-1\n'
PANIC = FailureReport(
    flow_id=BOOM,
    node="hi",
    progdef="explode",
    executor="explode-host-7",
    error="ValueError: panic-1",
    traceback=TRACEBACK,
    kind=FAILURE_KIND_PANIC,
    time=CREATED + 2,
)
GREETINGS = [{"text": f"hello name-{i}"} for i in range(3)]


def export(value: dict[str, Any]) -> pb.Export:
    return pb.Export(export="greetings", value_json=json.dumps(value))


def node(name: str, progdef: str, state: int, sent: int, received: int = 0) -> pb.NodeProgress:
    return pb.NodeProgress(
        node=name,
        progdef=progdef,
        version="0123abcd",
        state=state,
        executor=f"{progdef}-host-7",
        items_sent=sent,
        items_received=received,
    )


RECORDS = {
    HELLO: pb.FlowRecord(
        id=HELLO,
        name="hello",
        state=pb.FLOW_STATE_SUCCEEDED,
        created=CREATED,
        ended=CREATED + 1,
        exports=[export(v) for v in GREETINGS],
        nodes=[
            node("names", "source", pb.NODE_STATE_ENDED, 3, 1),
            node("hi", "greet", pb.NODE_STATE_ENDED, 3, 3),
        ],
        edges=[
            pb.EdgeProgress(
                source="names.src",
                target="hi.name",
                items_sent=3,
                items_received=3,
                queue_depth=0,
                sampled=CREATED + 0.5,
            ),
        ],
    ),
    BOOM: pb.FlowRecord(
        id=BOOM,
        name="boom",
        state=pb.FLOW_STATE_FAILED,
        created=CREATED + 10,
        ended=CREATED + 12,
        failure=PANIC,
        exports=[export(GREETINGS[0])],
        nodes=[node("hi", "explode", pb.NODE_STATE_FAILED, 1)],
    ),
    STOPPED: pb.FlowRecord(
        id=STOPPED,
        name="stopped",
        state=pb.FLOW_STATE_CANCELLED,
        created=CREATED + 20,
        ended=CREATED + 21,
    ),
}


class FakeScheduler(scheduler_pb2_grpc.SchedulerServicer):
    """Canned answers: `hello` succeeds, `boom` panics, `stopped` is cancelled."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.past: dict[str, list[FailureReport]] = {BOOM: [PANIC]}

    def _record(self, flow_id: str, context: grpc.ServicerContext) -> pb.FlowRecord:
        if flow_id not in RECORDS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no flow {flow_id}: see `dagyo flow list`")
        return RECORDS[flow_id]

    def Submit(self, request: pb.SubmitRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        name = json.loads(request.flow_json).get("name")
        if name == "invalid":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{request.source}: hi.nmae: no such input on progdef greet (did "
                "you mean 'name'?)\n"
                f"{request.source}: out.sink: no source: connect an edge or a const",
            )
        if name == "unserved":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "progdef gpu_model has no executor and no autoscaler: start one",
            )
        return pb.SubmitResponse(flow_id={"boom": BOOM}.get(name, HELLO))

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> Any:
        return self._record(request.flow_id, context)

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> Any:
        return pb.ListResponse(flows=list(RECORDS.values()))

    def Cancel(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> Any:
        record = pb.FlowRecord()
        record.CopyFrom(self._record(request.flow_id, context))
        record.state = pb.FLOW_STATE_CANCELLED
        return record

    def Watch(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Any:
        record = self._record(request.flow_id, context)
        running = pb.FlowRecord(id=record.id, name=record.name, state=pb.FLOW_STATE_RUNNING)
        yield pb.WatchEvent(progress=running)
        for item in record.exports:
            yield pb.WatchEvent(export=item)
        yield pb.WatchEvent(end=record)

    def Failures(self, request: pb.FailuresRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        if not request.flow_id:
            return pb.FailuresResponse(failures=[PANIC])
        return pb.FailuresResponse(failures=self.past.get(request.flow_id, []))


@pytest.fixture
def scheduler() -> Iterator[tuple[str, FakeScheduler]]:
    """A test double of the scheduler on a free port: (address, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fake = FakeScheduler()
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(fake, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    yield f"localhost:{port}", fake
    server.stop(0)


def write(tmp_path: Path, flow: dict[str, Any]) -> Path:
    path = tmp_path / f"{flow['name']}.json"
    path.write_text(json.dumps(flow))
    return path


def lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def export_lines(values: list[dict[str, Any]]) -> str:
    return "".join(json.dumps({"export": "greetings", "value": v}) + "\n" for v in values)


PANIC_REPORT = (
    "dagyo: flow failed: node hi (progdef explode) on executor explode-host-7: "
    f"ValueError: panic-1\n{TRACEBACK}"
)


# --- unreachable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["flow", "submit", str(EXAMPLES / "hello.json")],
        ["flow", "watch", HELLO],
        ["flow", "status", HELLO],
        ["flow", "list"],
        ["flow", "cancel", HELLO],
        ["failures"],
    ],
)
def test_an_unreachable_scheduler_is_one_line_and_exit_3(args: list[str]) -> None:
    address = free_address()
    result = dagyo(*args, address=address)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"dagyo: cannot reach the scheduler at {address}: start it with `dagyo up` or "
        "`dagyo scheduler`, or set DAGYO_SCHEDULER to its host:port\n"
    )


def test_the_console_script_says_the_same_without_a_traceback() -> None:
    address = free_address()
    done = run_dagyo("flow", "list", env={"DAGYO_SCHEDULER": address})
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [
        f"dagyo: cannot reach the scheduler at {address}: start it with `dagyo up` or "
        "`dagyo scheduler`, or set DAGYO_SCHEDULER to its host:port"
    ]


@pytest.mark.parametrize("args", [["up"], ["failures", "--follow", "--broker"]])
def test_an_unreachable_broker_is_one_line_and_exit_3(args: list[str]) -> None:
    done = run_dagyo(
        *args, env={"DAGYO_QUEUE": UNREACHABLE_QUEUE, "DAGYO_SCHEDULER": free_address()}
    )
    assert (done.returncode, done.stdout) == (3, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("dagyo: cannot reach the broker at amqp://guest:***@localhost:1/%2F")
    assert "start RabbitMQ" in line and "DAGYO_QUEUE" in line


# --- submit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_an_unreadable_flow_file_exits_2_naming_it(name: str) -> None:
    result = dagyo("flow", "submit", name)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"dagyo: {name}: cannot read the flow file: ")
    assert len(result.stderr.splitlines()) == 1


def test_submit_prints_the_flow_id_alone(scheduler: tuple[str, FakeScheduler]) -> None:
    address, fake = scheduler
    path = EXAMPLES / "hello.json"
    result = dagyo("flow", "submit", str(path), "--deadline", "30", address=address)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{HELLO}\n", "")
    [request] = fake.requests
    assert request.flow_json == path.read_text()
    assert (request.source, request.deadline_s) == (str(path), 30.0)


def test_submit_of_an_invalid_flow_prints_every_problem_and_exits_2(
    scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    path = write(tmp_path, {"name": "invalid"})
    result = dagyo("flow", "submit", str(path), address=scheduler[0])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"dagyo: {path}: hi.nmae: no such input on progdef greet (did you mean 'name'?)\n"
        f"dagyo: {path}: out.sink: no source: connect an edge or a const\n"
    )


def test_submit_naming_a_progdef_without_executor_exits_2(
    scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    result = dagyo(
        "flow", "submit", str(write(tmp_path, {"name": "unserved"})), address=scheduler[0]
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "dagyo: progdef gpu_model has no executor and no autoscaler: start one\n"
    )


def test_submit_wait_streams_the_exports_in_order(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "submit", str(EXAMPLES / "hello.json"), "--wait", address=scheduler[0])
    assert (result.exit_code, result.stderr) == (0, f"{HELLO}\n")
    assert result.stdout == export_lines(GREETINGS)


def test_submit_wait_of_a_failing_flow_exits_1_with_the_report(
    scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    result = dagyo(
        "flow", "submit", str(write(tmp_path, {"name": "boom"})), "--wait", address=scheduler[0]
    )
    assert result.exit_code == 1
    assert result.stdout == export_lines(GREETINGS[:1])
    assert result.stderr == f"{BOOM}\n{PANIC_REPORT}"


# --- watch, status, list, cancel -----------------------------------------------------------------


def test_watch_prints_exports_as_run_does(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", HELLO, address=scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, export_lines(GREETINGS), "")


def test_watch_of_a_failed_flow_exits_1(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", BOOM, address=scheduler[0])
    assert (result.exit_code, result.stderr) == (1, PANIC_REPORT)


def test_watch_of_a_cancelled_flow_exits_1(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", STOPPED, address=scheduler[0])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"dagyo: flow {STOPPED} was cancelled\n"


@pytest.mark.parametrize("command", ["watch", "status", "cancel"])
def test_an_unknown_flow_id_exits_2(scheduler: tuple[str, FakeScheduler], command: str) -> None:
    result = dagyo("flow", command, "ffffffffffff", address=scheduler[0])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "dagyo: no flow ffffffffffff: see `dagyo flow list`\n"


def when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def test_status_shows_state_nodes_and_failure(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", BOOM, address=scheduler[0])
    assert (result.exit_code, result.stderr) == (1, "")
    assert result.stdout == (
        f"flow {BOOM} (boom): failed\n"
        f"created {when(CREATED + 10)}, ended {when(CREATED + 12)}\n"
        "node  progdef  version   state   executor        items received  items sent\n"
        "hi    explode  0123abcd  failed  explode-host-7  0               1\n"
        "failure (panic): node hi (progdef explode) on executor explode-host-7: "
        f"ValueError: panic-1\n{TRACEBACK}"
        "exports kept: 1\n"
    )


def test_status_of_a_succeeded_flow_exits_0(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", HELLO, address=scheduler[0])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"flow {HELLO} (hello): succeeded"


def test_status_shows_each_edge_with_its_items_and_queue_depth(
    scheduler: tuple[str, FakeScheduler],
) -> None:
    result = dagyo("flow", "status", HELLO, address=scheduler[0])
    assert result.stdout.splitlines()[2:] == [
        "node   progdef  version   state  executor       items received  items sent",
        "names  source   0123abcd  ended  source-host-7  1               3",
        "hi     greet    0123abcd  ended  greet-host-7   3               3",
        "edge                  items sent  items received  queue depth",
        "names.src -> hi.name  3           3               0",
        "exports kept: 3",
    ]


def test_status_json_is_the_record(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", BOOM, "--json", address=scheduler[0])
    assert result.exit_code == 1
    assert lines(result.stdout) == [
        {
            "id": BOOM,
            "name": "boom",
            "state": "failed",
            "created": CREATED + 10,
            "ended": CREATED + 12,
            "nodes": [
                {
                    "node": "hi",
                    "progdef": "explode",
                    "state": "failed",
                    "executor": "explode-host-7",
                    "items_sent": 1,
                    "version": "0123abcd",
                    "items_received": 0,
                    "published": 0.0,
                    "started": 0.0,
                    "ended": 0.0,
                    "errors_sent": 0,
                }
            ],
            "failure": {
                "flow_id": BOOM,
                "node": "hi",
                "progdef": "explode",
                "executor": "explode-host-7",
                "error": "ValueError: panic-1",
                "traceback": TRACEBACK,
                "kind": "panic",
                "time": CREATED + 2,
            },
            "exports": [{"export": "greetings", "value": GREETINGS[0]}],
            "exports_truncated": False,
            "exports_dropped": 0,
            "tenant": "",
            "waiting": "",
            "edges": [],
        }
    ]


def test_status_json_of_a_flow_without_failure(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", HELLO, "--json", address=scheduler[0])
    [record] = lines(result.stdout)
    assert (result.exit_code, record["state"], record["failure"]) == (0, "succeeded", None)
    assert [n["state"] for n in record["nodes"]] == ["ended", "ended"]


def test_list_prints_one_line_per_flow(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "list", address=scheduler[0])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"{HELLO}  succeeded  hello    {when(CREATED)}\n"
        f"{BOOM}  failed     boom     {when(CREATED + 10)}\n"
        f"{STOPPED}  cancelled  stopped  {when(CREATED + 20)}\n"
    )


def test_list_json(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "list", "--json", address=scheduler[0])
    assert result.exit_code == 0
    assert [(r["id"], r["state"], r["name"]) for r in lines(result.stdout)] == [
        (HELLO, "succeeded", "hello"),
        (BOOM, "failed", "boom"),
        (STOPPED, "cancelled", "stopped"),
    ]


def test_cancel_prints_the_resulting_state(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "cancel", HELLO, address=scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{HELLO} cancelled\n", "")


# --- failures ---------------------------------------------------------------------------------


PANIC_LINE = f"{BOOM} hi (explode) on explode-host-7: ValueError: panic-1"


def test_failures_one_per_line(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("failures", address=scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{PANIC_LINE}\n", "")


def test_failures_of_one_flow(scheduler: tuple[str, FakeScheduler]) -> None:
    address, fake = scheduler
    result = dagyo("failures", "--flow", HELLO, address=address)
    assert (result.exit_code, result.stdout) == (0, "")
    assert [r.flow_id for r in fake.requests] == [HELLO]


def test_failures_json(scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("failures", "--json", address=scheduler[0])
    assert result.exit_code == 0
    assert lines(result.stdout) == [
        {
            "flow_id": BOOM,
            "node": "hi",
            "progdef": "explode",
            "executor": "explode-host-7",
            "error": "ValueError: panic-1",
            "traceback": TRACEBACK,
            "kind": "panic",
            "time": CREATED + 2,
        }
    ]


class Following:
    """`dagyo failures --follow` as a subprocess, its output read line by line."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from scheduler.cli import main; main()",
                "failures",
                "--follow",
                "--broker",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines_read), daemon=True)
            for stream, lines_read in (
                (self.process.stdout, self.stdout),
                (self.process.stderr, self.stderr),
            )
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines_read: queue.Queue[str]) -> None:
        for line in stream:
            lines_read.put(line.rstrip("\n"))

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=20)
        for reader in self.readers:
            reader.join(5)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def publish(broker_url: str, report: FailureReport) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(FAILURES_EXCHANGE, exchange_type="topic", durable=True)
        channel.basic_publish(
            FAILURES_EXCHANGE, routing_key=report.flow_id, body=report.SerializeToString()
        )
    finally:
        connection.close()


def live_report(flow_id: str, error: str = "RuntimeError: live") -> FailureReport:
    return FailureReport(
        flow_id=flow_id,
        node="x",
        progdef="explode",
        executor="explode-e1",
        error=error,
        kind=FAILURE_KIND_PANIC,
    )


def test_failures_follow_prints_past_then_live_reports_of_its_flow(
    scheduler: tuple[str, FakeScheduler], broker_url: str
) -> None:
    address, fake = scheduler
    flow_id, other = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    past = live_report(flow_id, "RuntimeError: past")
    fake.past[flow_id] = [past]
    following = Following(
        "--flow", flow_id, env={"DAGYO_QUEUE": broker_url, "DAGYO_SCHEDULER": address}
    )
    try:
        # The past is read after the queue is bound, so what follows is not missed.
        assert following.stdout.get(timeout=20) == (
            f"{flow_id} x (explode) on explode-e1: RuntimeError: past"
        )
        publish(broker_url, live_report(other, "RuntimeError: another flow"))
        publish(broker_url, past)  # already shown: not repeated
        publish(broker_url, live_report(flow_id, "RuntimeError: live"))
        assert following.stdout.get(timeout=20) == (
            f"{flow_id} x (explode) on explode-e1: RuntimeError: live"
        )
        assert following.interrupt() == 0
        assert following.stdout.empty()
        assert following.stderr.empty()
    finally:
        following.close()


def test_failures_follow_without_a_scheduler_still_follows_the_broker(broker_url: str) -> None:
    flow_id = uuid.uuid4().hex[:12]
    address = free_address()
    following = Following("--json", env={"DAGYO_QUEUE": broker_url, "DAGYO_SCHEDULER": address})
    try:
        assert following.stderr.get(timeout=20).startswith(
            f"dagyo: cannot reach the scheduler at {address}"
        )
        assert following.stderr.get(timeout=5) == (
            "dagyo: past failures are unavailable; following new ones on the broker"
        )
        publish(broker_url, live_report(flow_id))
        while (report := json.loads(following.stdout.get(timeout=20)))["flow_id"] != flow_id:
            pass  # another test's (or run's) failure on the shared broker
        assert report == {
            "flow_id": flow_id,
            "node": "x",
            "progdef": "explode",
            "executor": "explode-e1",
            "error": "RuntimeError: live",
            "traceback": "",
            "kind": "panic",
            "time": 0.0,
        }
        assert following.interrupt() == 0
    finally:
        following.close()


# --- up -----------------------------------------------------------------------------------------

# `dagyo up` with a stand-in for the in-process scheduler service, so this tests what `up`
# itself does: the executor processes on the real broker, readiness, and the stop.
UP_WITH_A_STUB_SCHEDULER = """
import sys, types
service = types.ModuleType("scheduler.service.server")
class Scheduler:
    dashboard = None
    failed = None
    def __init__(self, settings):
        self.address = settings.address
    def start(self):
        print("stub scheduler started", file=sys.stderr, flush=True)
    def stop(self):
        print("stub scheduler stopped", file=sys.stderr, flush=True)
service.Scheduler = Scheduler
sys.modules["scheduler.service.server"] = service
from scheduler.cli import main
main()
"""


@pytest.fixture
def catalogue(tmp_path: Path, broker_url: str) -> Iterator[Path]:
    """Copies of two sample progdefs with versions of their own, so the executors of these
    tests pull mailboxes no other test publishes to; the mailboxes are deleted after."""
    from executor.progdef import load_catalogue
    from scheduler.local_cluster import private_catalogue
    from tests.conftest import PROGDEFS

    private_catalogue(PROGDEFS, tmp_path, ("greet", "void_sink"), tag="test")
    yield tmp_path
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for progdef in load_catalogue(tmp_path).values():
            channel.queue_delete(progdef.mailbox)
    finally:
        connection.close()


class Up:
    """`dagyo up` as a subprocess; ``lines`` are its stdout lines up to the scheduler's."""

    def __init__(self, broker_url: str, catalogue: Path, address: str) -> None:
        env = {**os.environ, "DAGYO_QUEUE": broker_url, "DAGYO_STATE": ":memory:"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                UP_WITH_A_STUB_SCHEDULER,
                "up",
                "--listen",
                address,
                "--progdefs",
                str(catalogue),
            ],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("scheduler: "):
                break

    def pids(self) -> dict[str, int]:
        return {
            line.split()[1].rstrip(":"): int(line.split("pid ")[1].split(",")[0])
            for line in self.lines
            if line.startswith("executor ")
        }

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=120)
        return self.process.returncode, stderr

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_one_executor_per_progdef_and_stops_cleanly(
    broker_url: str, catalogue: Path, signum: int
) -> None:
    from executor.progdef import load_catalogue

    address = free_address()
    up = Up(broker_url, catalogue, address)
    try:
        progdefs = load_catalogue(catalogue)
        assert up.lines[-1] == f"scheduler: listening on {address}"
        pids = up.pids()
        assert sorted(pids) == ["greet", "void_sink"]
        for name, progdef in progdefs.items():
            assert f"executor {name}: pid {pids[name]}, mailbox {progdef.mailbox}" in up.lines
        assert all(alive(pid) for pid in pids.values())
        status, stderr = up.stop(signum)
        assert status == 0, stderr
        assert "stub scheduler stopped" in stderr
        assert stderr.rstrip().endswith("dagyo: stopped")
        assert not any(alive(pid) for pid in pids.values())
    finally:
        up.close()


def wait_for_consumer(broker_url: str, mailbox: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        deadline = time.monotonic() + 60
        while not connection.channel().queue_declare(mailbox, passive=True).method.consumer_count:
            assert time.monotonic() < deadline, f"no consumer on {mailbox}"
            time.sleep(0.2)
    finally:
        connection.close()


def test_up_starts_a_dead_executor_again_and_keeps_the_rest(
    broker_url: str, catalogue: Path
) -> None:
    from executor.progdef import load_catalogue

    up = Up(broker_url, catalogue, free_address())
    try:
        pids = up.pids()
        os.kill(pids["greet"], signal.SIGKILL)
        assert up.process.stdout is not None
        again = up.process.stdout.readline()
        assert again.startswith("executor greet: pid "), again
        new_pid = int(again.split("pid ")[1].split(",")[0])
        assert new_pid != pids["greet"] and alive(new_pid) and alive(pids["void_sink"])
        wait_for_consumer(broker_url, load_catalogue(catalogue)["greet"].mailbox)
        status, stderr = up.stop()
        assert status == 0, stderr
        assert (
            f"dagyo: executor greet (pid {pids['greet']}) exited with status -9; "
            "starting it again in 1 s"
        ) in stderr.splitlines()
        assert not any(alive(pid) for pid in (new_pid, pids["void_sink"]))
    finally:
        up.close()


# --- the real scheduler service -----------------------------------------------------------------


def test_dagyo_scheduler_serves_until_sigterm_then_exits_0(broker_url: str) -> None:
    address = free_address()
    env = {**os.environ, "DAGYO_QUEUE": broker_url, "DAGYO_METRICS_PORT": "0"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from scheduler.cli import main; main()",
            "scheduler",
            "--listen",
            address,
            "--state",
            ":memory:",
        ],
        cwd=ROOT,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
    )
    try:
        listed = None
        for _ in range(120):  # the scheduler takes a moment to listen
            listed = dagyo("flow", "list", address=address)
            if listed.exit_code != 3:
                break
            time.sleep(0.25)
        assert listed is not None and (listed.exit_code, listed.stdout) == (0, "")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
