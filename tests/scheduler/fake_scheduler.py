"""A test double of the scheduler for the CLI's tests: canned flow records over real gRPC.

The ``fake_scheduler`` fixture (tests/scheduler/conftest.py) serves them on a free port;
the rest is what the CLI prints of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc

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
# PANIC as the CLI prints it in JSON (`failures --json`, a record's failure).
PANIC_JSON = {
    "flow_id": BOOM,
    "node": "hi",
    "progdef": "explode",
    "executor": "explode-host-7",
    "error": "ValueError: panic-1",
    "traceback": TRACEBACK,
    "kind": "panic",
    "time": CREATED + 2,
}
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
