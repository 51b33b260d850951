"""Driving a node executor on the wire, as a scheduler would (tests/test_node_wire.py,
tests/test_node_process.py): it serves a progdef folder written by the test, on a mailbox
of its own; the test publishes jobs, feeds and reads stream queues, and hears the events
and failure reports."""

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
from google.protobuf.message import Message

from executor.core.constants import EVENTS_EXCHANGE, FAILURES_EXCHANGE, STOP_EXCHANGE
from executor.pb.dagyo.v1.events_pb2 import Event
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Job
from tests.conftest import PROGDEFS
from tests.waiting import eventually

STREAM_ARGUMENTS = {"x-max-length": 16, "x-overflow": "reject-publish"}


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
