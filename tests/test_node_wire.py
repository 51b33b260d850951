"""The node executor on the wire of docs/protocol.md, driven as a scheduler would: jobs
published to its mailbox, frames read from and written to its stream queues, its events
and failure reports read from the exchanges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

from executor.core.constants import EVENTS_EXCHANGE, FAILURES_EXCHANGE, STOP_EXCHANGE
from executor.pb.dagyo.v1.events_pb2 import Event, Stop
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Job
from executor.types import Error, Float64, Text
from tests.conftest import PROGDEFS
from tests.waiting import eventually

STREAM_ARGUMENTS = {"x-max-length": 16, "x-overflow": "reject-publish"}

MERGE = """
export async function run(job) {
  for await (const [port, item] of job.merge()) {
    await job.outputs.out.send({ text: `${port}:${item.text}` });
  }
}
"""
FAILING = """
let calls = 0;
export function handler(ctx, item) {
  calls += 1;
  if (item.text.startsWith("bad")) throw new TypeError(`no ${item.text} (call ${calls})`);
  return { text: item.text + "!" };
}
"""
DISTANCE = """
export async function run(job) {
  for await (const point of job.inputs.points) {
    await job.outputs.km.send({ value: point.lat + point.lon });
  }
}
"""
WAITS = """
export async function run(job) {
  for await (const item of job.inputs.a) {}
}
"""


class Wire:
    """One node executor process and a broker connection to drive it."""

    def __init__(
        self, url: str, folder: Path, env: dict[str, str], flags: tuple[str, ...] = ()
    ) -> None:
        self.url = url
        self.folder = folder
        self.progdef = json.loads((folder / "progdef.json").read_text())["name"]
        self.version = uuid.uuid4().hex[:16]
        self.mailbox = f"dagyo.mailbox.{self.progdef}.{self.version}"
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        self.channel.exchange_declare(FAILURES_EXCHANGE, "topic", durable=True)
        self.channel.exchange_declare(STOP_EXCHANGE, "fanout", durable=True)
        self.events = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.events, EVENTS_EXCHANGE, "job.#")
        self.failures = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.failures, FAILURES_EXCHANGE, "#")
        self.queues: list[str] = [self.mailbox]
        env = {
            **os.environ,
            "DAGYO_QUEUE": url,
            "DAGYO_JOBS": self.mailbox,
            "DAGYO_METRICS_PORT": "-1",
            "DAGYO_HEARTBEAT_INTERVAL_S": "0.5",
            **env,
        }
        env["DAGYO_OBJECTS"] = (folder / "objects").as_uri()
        self.env = env
        self.log = folder / "executor.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "node",
                    str(PROGDEFS.parent / "sdks/js/bin/dagyo-executor.js"),
                    str(folder),
                    *flags,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        eventually(self.consumed, what=lambda: f"no consumer on {self.mailbox}: {self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def consumed(self) -> bool:
        channel = self.connection.channel()
        try:
            return channel.queue_declare(self.mailbox, passive=True).method.consumer_count > 0
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if channel.is_open:
                channel.close()

    def stream(self) -> str:
        queue = f"dagyo.flow.{uuid.uuid4().hex[:12]}.in.n.p"
        self.channel.queue_declare(queue, arguments=STREAM_ARGUMENTS)
        self.queues.append(queue)
        return queue

    def job(self, flow_id: str = "", **fields: Any) -> Job:
        return Job(
            flow_id=flow_id or uuid.uuid4().hex[:12],
            node="n",
            progdef=self.progdef,
            version=self.version,
            **fields,
        )

    def publish(self, job: Job) -> None:
        self.channel.basic_publish("", self.mailbox, job.SerializeToString())

    def frames(self, queue: str) -> list[Frame]:
        def got() -> list[Frame]:
            frames = []
            while True:
                method, _, body = self.channel.basic_get(queue, auto_ack=False)
                if method is None:
                    return frames
                frames.append(Frame.FromString(body))
                self.channel.basic_ack(method.delivery_tag)

        taken: list[Frame] = []
        eventually(
            lambda: taken.extend(got()) or (taken and taken[-1].end_of_stream),
            what=lambda: f"no end-of-stream on {queue}: {self.output()}",
        )
        return taken

    def ended(self) -> Any:
        return self.take(self.events, Event, lambda e: e.WhichOneof("kind") == "ended").ended

    def failure(self) -> FailureReport:
        return self.take(self.failures, FailureReport, lambda _: True)

    def take(self, queue: str, kind: type[Message], wanted: Any) -> Any:
        def one() -> Any:
            while True:
                method, _, body = self.channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return None
                message = kind.FromString(body)
                if wanted(message):
                    return message

        return eventually(one, what=lambda: f"nothing on {queue}: {self.output()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        for queue in self.queues:
            self.channel.queue_delete(queue)
        self.connection.close()


def write(folder: Path, code: str, **fields: Any) -> Path:
    folder.mkdir(parents=True)
    (folder / "progdef.json").write_text(json.dumps({"runtime": "node", **fields}))
    (folder / "main.js").write_text(code)
    return folder


@pytest.fixture
def wire(broker_url: str, tmp_path: Path, node_sdk: Path, request: Any) -> Iterator[Wire]:
    code, fields, *rest = request.param
    env, flags = (rest + [{}, ()])[:2]
    made = Wire(broker_url, write(tmp_path / "p", code, **fields), env, flags)
    yield made
    made.close()


def merged() -> tuple[str, dict[str, Any]]:
    ports = {"a": "dagyo.types.Text", "b": "dagyo.types.Text"}
    return MERGE, {
        "name": "merger",
        "inputs": ports,
        "outputs": {"out": "dagyo.types.Text"},
        "run": "main.js:run",
    }


def text_frame(seq: int, *texts: str, token: str = "t", end: bool = False) -> bytes:
    frame = Frame(seq=seq, typename="dagyo.types.Text", token=token, end_of_stream=end)
    frame.items.extend(Text(text=t).SerializeToString() for t in texts)
    return frame.SerializeToString()


@pytest.mark.parametrize("wire", [merged()], indirect=True)
def test_a_stream_job_merges_its_inputs_and_ends_its_outputs(wire: Wire) -> None:
    source, out = wire.stream(), wire.stream()
    job = wire.job()
    job.inputs["a"].typename = "dagyo.types.Text"
    job.inputs["a"].consts.items.append(Text(text="x").SerializeToString())
    job.inputs["b"].typename = "dagyo.types.Text"
    job.inputs["b"].queue = source
    job.inputs["b"].edge = "up.out"
    job.inputs["b"].token = "t"
    job.outputs["out"].typename = "dagyo.types.Text"
    job.outputs["out"].queues.append(out)
    job.outputs["out"].token = "made-for-out"
    wire.publish(job)
    wire.channel.basic_publish("", source, text_frame(0, "y", "z"))
    wire.channel.basic_publish("", source, text_frame(1, end=True))
    frames = wire.frames(out)
    items = [Text.FromString(item).text for frame in frames for item in frame.items]
    assert items == ["a:x", "b:y", "b:z"]
    assert [frame.seq for frame in frames] == list(range(len(frames)))
    assert {frame.token for frame in frames} == {"made-for-out"}
    assert {frame.typename for frame in frames} == {"dagyo.types.Text"}
    ended = wire.ended()
    assert ended.outcome == "" and ended.job.flow_id == job.flow_id
    assert dict(ended.items_sent) == {"out": 3}
    assert dict(ended.items_received) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (text_frame(0, "y", token="forged"), "without the producer token"),
        (text_frame(1, "y"), "frame 1 arrived where frame 0 was due (a frame was lost)"),
        (
            Frame(seq=0, typename="dagyo.types.Int64", token="t").SerializeToString(),
            "a frame of dagyo.types.Int64 arrived on a stream of dagyo.types.Text",
        ),
        (b"\xff\xff\xff", "received a frame that does not parse"),
    ],
)
@pytest.mark.parametrize("wire", [merged()], indirect=True)
def test_a_bad_frame_panics_the_job_naming_the_edge(wire: Wire, frame: bytes, problem: str) -> None:
    source, out = wire.stream(), wire.stream()
    job = wire.job()
    for port in ("a", "b"):
        job.inputs[port].typename = "dagyo.types.Text"
        job.inputs[port].queue = source if port == "b" else ""
    job.inputs["a"].consts.SetInParent()
    job.inputs["b"].edge = "up.out"
    job.inputs["b"].token = "t"
    job.outputs["out"].typename = "dagyo.types.Text"
    job.outputs["out"].queues.append(out)
    wire.publish(job)
    wire.channel.basic_publish("", source, frame)
    report = wire.failure()
    assert report.flow_id == job.flow_id and report.node == "n"
    assert report.error.startswith("StreamCorrupt: up.out -> n.b: ")
    assert problem in report.error
    assert wire.ended().outcome == "panicked"


@pytest.mark.parametrize("wire", [merged()], indirect=True)
def test_a_job_for_another_version_is_refused_unrun(wire: Wire) -> None:
    job = wire.job()
    job.version = "0123456789abcdef"
    wire.publish(job)
    report = wire.failure()
    assert "refused unrun" in report.error and f"version {wire.version}" in report.error
    assert wire.ended().outcome == "refused"


@pytest.mark.parametrize(
    "wire",
    [
        (
            WAITS,
            {
                "name": "waiter",
                "inputs": {"a": "dagyo.types.Text"},
                "outputs": {},
                "run": "main.js:run",
            },
        )
    ],
    indirect=True,
)
def test_a_stop_for_its_flow_stops_the_job(wire: Wire) -> None:
    source = wire.stream()
    job = wire.job()
    job.inputs["a"].typename = "dagyo.types.Text"
    job.inputs["a"].queue = source
    wire.publish(job)
    wire.take(wire.events, Event, lambda e: e.WhichOneof("kind") == "started")
    stop = Stop(flow_id=job.flow_id, reason="cancelled by a test")
    wire.channel.basic_publish(STOP_EXCHANGE, "", stop.SerializeToString())
    ended = wire.ended()
    assert ended.outcome == "stopped"
    assert ended.reason == f"stopped by a Stop for flow {job.flow_id} (cancelled by a test)"


@pytest.mark.parametrize(
    "wire",
    [
        (
            FAILING,
            {
                "name": "failing",
                "inputs": {"t": "dagyo.types.Text"},
                "outputs": {"out": "dagyo.types.Text", "errors": "dagyo.types.Error"},
                "errors": "errors",
                "style": "function",
                "run": "main.js:handler",
                "retries": {"attempts": 2, "backoff_ms": 1},
            },
        )
    ],
    indirect=True,
)
def test_an_item_that_fails_after_its_retries_goes_to_the_error_port(wire: Wire) -> None:
    out, errors = wire.stream(), wire.stream()
    job = wire.job()
    job.inputs["t"].typename = "dagyo.types.Text"
    job.inputs["t"].consts.items.extend(
        Text(text=t).SerializeToString() for t in ("ok", "bad-1", "fine")
    )
    job.outputs["out"].typename = "dagyo.types.Text"
    job.outputs["out"].queues.append(out)
    job.outputs["errors"].typename = "dagyo.types.Error"
    job.outputs["errors"].queues.append(errors)
    wire.publish(job)
    items = [Text.FromString(i).text for f in wire.frames(out) for i in f.items]
    assert items == ["ok!", "fine!"]
    (error,) = [Error.FromString(i) for f in wire.frames(errors) for i in f.items]
    assert error.error == "TypeError: no bad-1 (call 3)"  # tried twice
    assert error.attempts == 2 and error.node == "n" and error.progdef == "failing"
    assert Text.FromString(error.item).text == "bad-1"
    assert "at handler (" in error.traceback
    assert wire.ended().outcome == ""


def geo_types() -> descriptor_pb2.FileDescriptorSet:
    every = descriptor_pb2.FileDescriptorSet.FromString(
        (PROGDEFS / "distance" / "types.binpb").read_bytes()
    )
    own = descriptor_pb2.FileDescriptorSet()
    own.file.extend(f for f in every.file if not f.name.startswith("google/"))
    return own


@pytest.mark.parametrize(
    "wire",
    [
        (
            DISTANCE,
            {
                "name": "geo",
                "inputs": {"points": "T"},
                "outputs": {"km": "dagyo.types.Float64"},
                "run": "main.js:run",
            },
        )
    ],
    indirect=True,
)
def test_items_of_a_type_the_job_brings_are_read_with_its_descriptor_set(wire: Wire) -> None:
    pool_types = geo_types()
    point = _point_class(pool_types)
    out = wire.stream()
    job = wire.job()
    job.types.CopyFrom(pool_types)
    job.inputs["points"].typename = "acme.geo.Point"
    job.inputs["points"].consts.items.append(
        point(lat=1.5, lon=2.0, label="here").SerializeToString()
    )
    job.outputs["km"].typename = "dagyo.types.Float64"
    job.outputs["km"].queues.append(out)
    wire.publish(job)
    values = [Float64.FromString(i).value for f in wire.frames(out) for i in f.items]
    assert values == [3.5]
    assert wire.ended().outcome == ""


def _point_class(types: descriptor_pb2.FileDescriptorSet) -> Any:
    from google.protobuf import descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    for file in types.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.geo.Point"))


@pytest.mark.parametrize(
    "wire",
    [
        (
            WAITS,
            {
                "name": "waiter",
                "inputs": {"a": "dagyo.types.Text"},
                "outputs": {},
                "run": "main.js:run",
            },
            {"DAGYO_MAX_JOBS": "1", "DAGYO_DRAIN_GRACE_S": "1"},
        )
    ],
    indirect=True,
)
def test_sigterm_drains_gives_back_the_jobs_not_started_and_exits_0(wire: Wire) -> None:
    first, second = wire.job(), wire.job()
    for job in (first, second):
        job.inputs["a"].typename = "dagyo.types.Text"
        job.inputs["a"].queue = wire.stream()
        wire.publish(job)
    started = wire.take(wire.events, Event, lambda e: e.WhichOneof("kind") == "started")
    assert started.started.job.flow_id == first.flow_id
    wire.process.send_signal(signal.SIGTERM)
    assert wire.process.wait(60) == 0
    ended = wire.ended()
    assert ended.job.flow_id == first.flow_id and ended.outcome == "executor"
    assert "after the drain grace period of 1 s" in ended.reason
    waiting = wire.channel.queue_declare(wire.mailbox, passive=True).method.message_count
    assert waiting == 1  # the second job, never started, is back for another executor


@pytest.mark.parametrize(
    "wire",
    [
        (
            WAITS,
            {"name": "once", "inputs": {"a": "dagyo.types.Text"}, "run": "main.js:run"},
            {},
            ("--one-job",),
        )
    ],
    indirect=True,
)
def test_with_one_job_it_runs_one_job_and_exits_0(wire: Wire) -> None:
    first, second = wire.job(), wire.job()
    for job in (first, second):
        job.inputs["a"].typename = "dagyo.types.Text"
        job.inputs["a"].consts.items.append(Text(text="x").SerializeToString())
        wire.publish(job)
    assert wire.process.wait(60) == 0
    ended = wire.ended()
    assert ended.job.flow_id == first.flow_id and ended.outcome == ""
    waiting = wire.channel.queue_declare(wire.mailbox, passive=True).method.message_count
    assert waiting == 1  # the second job, for the next pod


RELAY = """
export async function run(job) {
  for await (const item of job.inputs.text) await job.outputs.out.send({ text: item.text + "!" });
}
"""


@pytest.mark.parametrize(
    "wire",
    [
        (
            RELAY,
            {
                "name": "relay",
                "inputs": {"text": "dagyo.types.Text"},
                "outputs": {"out": "dagyo.types.Text"},
                "run": "main.js:run",
            },
            {"DAGYO_OFFLOAD_BYTES": "40"},
        )
    ],
    indirect=True,
)
def test_offloaded_items_are_read_from_and_kept_in_the_folder_store(wire: Wire) -> None:
    from executor.core.objects import open_store
    from executor.core.offload import Offloader, fetch
    from executor.pb.dagyo.v1.frame_pb2 import ObjectRef

    store = open_store(wire.env["DAGYO_OBJECTS"])
    source, out = wire.stream(), wire.stream()
    job = wire.job()
    job.inputs["text"].typename = "dagyo.types.Text"
    job.inputs["text"].queue = source
    job.inputs["text"].edge = "up.out"
    job.inputs["text"].token = "t"
    job.outputs["out"].typename = "dagyo.types.Text"
    job.outputs["out"].queues.append(out)
    wire.publish(job)
    big = "b" * 100
    frame = Frame(seq=0, typename="dagyo.types.Text", token="t", end_of_stream=True)
    frame.items.extend([Text(text="small").SerializeToString(), b""])
    offloader = Offloader(store, flow_id=job.flow_id, node="up", port="out")
    frame.offloaded.append(
        ObjectRef.FromString(offloader.put(Text(text=big).SerializeToString(), 1))
    )
    wire.channel.basic_publish("", source, frame.SerializeToString())
    frames = wire.frames(out)
    texts = []
    for sent in frames:
        items = list(sent.items)
        for reference in sent.offloaded:
            assert reference.key.startswith(f"flows/{job.flow_id}/n.out/")
            items[reference.index] = fetch(store, reference, flow_id=job.flow_id, where="out")
        texts += [Text.FromString(item).text for item in items]
    assert texts == ["small!", big + "!"]
    assert sum(len(f.offloaded) for f in frames) == 1  # only the item past 40 bytes
    assert wire.ended().outcome == ""
