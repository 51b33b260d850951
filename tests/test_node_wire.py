"""The node executor on the wire of docs/protocol.md, driven as a scheduler would: jobs
published to its mailbox, frames read from and written to its stream queues, its events
and failure reports read from the exchanges."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from executor.core.constants import STOP_EXCHANGE
from executor.pb.dagyo.v1.events_pb2 import Event, Stop
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import Error, Float64, Text
from tests.conftest import PROGDEFS
from tests.nodewire import Wire
from tests.nodewire import wire as wire  # noqa: F401  (the fixture)

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
