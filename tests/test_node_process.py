"""The node executor's process on the wire: a drain on SIGTERM, --one-job, offloaded
items in the folder store, and the declared secrets."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from executor.pb.dagyo.v1.events_pb2 import Event
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import Text
from tests.conftest import rabbitmqctl, vhost_of
from tests.nodewire import Wire, write
from tests.nodewire import wire as wire  # noqa: F401  (the fixture)

WAITS = """
export async function run(job) {
  for await (const item of job.inputs.a) {}
}
"""


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


SECRET = """
export async function init(ctx) {
  ctx.greeting = "token " + ctx.secrets.API_TOKEN;
}
export function handler(ctx, item) {
  ctx.logger.info("handling " + item.text);
  return { text: `${ctx.greeting} for ${item.text}` };
}
"""
SECRET_PROGDEF = {
    "name": "secretive",
    "inputs": {"t": "dagyo.types.Text"},
    "outputs": {"out": "dagyo.types.Text"},
    "style": "function",
    "run": "main.js:handler",
    "secrets": ["API_TOKEN"],
}


@pytest.mark.parametrize("wire", [(SECRET, SECRET_PROGDEF, {"API_TOKEN": "s3"})], indirect=True)
def test_init_and_the_handler_see_the_declared_secrets_on_the_context(wire: Wire) -> None:
    out = wire.stream()
    job = wire.job()
    job.inputs["t"].typename = "dagyo.types.Text"
    job.inputs["t"].consts.items.append(Text(text="ada").SerializeToString())
    job.outputs["out"].typename = "dagyo.types.Text"
    job.outputs["out"].queues.append(out)
    wire.publish(job)
    assert [Text.FromString(i).text for f in wire.frames(out) for i in f.items] == [
        "token s3 for ada"
    ]
    assert "INFO dagyo.progdef.secretive: handling ada" in wire.output()


def test_a_missing_secret_stops_the_executor_at_start_naming_it(
    tmp_path: Path, node_sdk: Path
) -> None:
    folder = write(tmp_path / "p", SECRET, **SECRET_PROGDEF)
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    env["DAGYO_JOBS"] = "dagyo.mailbox.secretive.0123456789abcdef"
    result = subprocess.run(
        ["node", str(node_sdk / "bin" / "dagyo-executor.js"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dagyo-executor: progdef secretive: secret API_TOKEN is not set: export it in the "
        "executor's environment (in Kubernetes, the progdef's Secret)"
    )


def test_it_takes_the_next_broker_url_and_declares_its_mailbox_of_the_queue_type(
    broker_url: str, tmp_path: Path, node_sdk: Path
) -> None:
    folder = write(
        tmp_path / "p",
        WAITS,
        name="waiter",
        inputs={"a": "dagyo.types.Text"},
        run="main.js:run",
    )
    down = "amqp://guest:guest@127.0.0.1:1/%2F"
    wire = Wire(broker_url, folder, {"DAGYO_QUEUE": f"{down};{broker_url}"})
    try:
        listed = rabbitmqctl(
            "list_queues", "-p", vhost_of(broker_url), "-q", "--no-table-headers", "name", "type"
        )
        types = dict(line.split() for line in listed.splitlines() if line.strip())
        assert types[wire.mailbox] == "quorum"  # several URLs: a broker of several nodes
    finally:
        wire.close()


def test_when_no_broker_url_answers_it_exits_3_hiding_every_password(
    tmp_path: Path, node_sdk: Path
) -> None:
    folder = write(
        tmp_path / "p", WAITS, name="waiter", inputs={"a": "dagyo.types.Text"}, run="main.js:run"
    )
    env = {**os.environ, "DAGYO_JOBS": "dagyo.mailbox.waiter.0123456789abcdef"}
    env["DAGYO_QUEUE"] = "amqp://guest:guest@127.0.0.1:1/%2F;amqp://ada:s3;cr%2Ft@127.0.0.1:2/%2F"
    result = subprocess.run(
        ["node", str(node_sdk / "bin" / "dagyo-executor.js"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "s3;cr" not in result.stderr
    assert result.stderr.startswith(
        "dagyo-executor: cannot reach the broker at "
        "amqp://guest:***@127.0.0.1:1/%2F;amqp://ada:***@127.0.0.1:2/%2F: "
    )
