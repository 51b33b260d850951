"""The scheduler's side of docs/protocol.md, played by hand on raw pika.

The conformance suite talks to an executor through nothing else: it declares the queues a
scheduler would, publishes job descriptors to the mailbox, feeds input frames, reads
output frames, hears every event and failure report, and sends stops. One connection, used
from the test's thread only; what the executor publishes is collected by polling one
queue bound to both the events and the failures exchange, so the order in which the broker
took a failure report and an event is the order the suite sees them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
import pika.exceptions

from executor.core.constants import (
    EVENTS_EXCHANGE,
    FAILURES_EXCHANGE,
    STOP_EXCHANGE,
    STREAM_MAX_FRAMES,
    stream_queue,
)
from executor.pb.dagyo.types_pb2 import Text
from executor.pb.dagyo.v1.events_pb2 import Event, Heartbeat, JobEnded, Stop
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Consts, Input, Job, Output
from tests.waiting import eventually

# Generous: only catches hangs. breakages.py shortens it (DAGYO_CONFORMANCE_WAIT_S), as
# a broken executor often fails a case by never sending what it waits for.
WAIT_S = float(os.environ.get("DAGYO_CONFORMANCE_WAIT_S") or 30)
TEXT = "dagyo.types.Text"
T = TypeVar("T")
# pika logs every nack of a full stream, which the suite meets on purpose.
logging.getLogger("pika.adapters.blocking_connection").setLevel(logging.ERROR)


def new_flow_id() -> str:
    """A flow id of its own (12 lowercase hex characters), so tests never meet."""
    return uuid.uuid4().hex[:12]


def texts(*values: str) -> list[bytes]:
    """Serialized dagyo.types.Text items."""
    return [Text(text=value).SerializeToString() for value in values]


def text_of(frames: Iterable[Frame]) -> list[str]:
    """The texts of every item of ``frames``, in order."""
    return [Text.FromString(item).text for frame in frames for item in frame.items]


@dataclass
class Heard:
    """One message the executor published: an event or a failure report."""

    exchange: str
    routing_key: str
    message: Event | FailureReport


class Wire:
    """The scheduler's side of the wire, for one test module."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        # Confirms: a frame or job the suite sent is in its queue once publish returns, and
        # a full stream answers with a nack (docs/protocol.md, Streams).
        self.channel.confirm_delivery()
        self.channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        self.channel.exchange_declare(FAILURES_EXCHANGE, "topic", durable=True)
        self.channel.exchange_declare(STOP_EXCHANGE, "fanout", durable=True)
        self.heard_queue = self.channel.queue_declare(
            "", exclusive=True, auto_delete=True
        ).method.queue
        self.channel.queue_bind(self.heard_queue, EVENTS_EXCHANGE, "#")
        self.channel.queue_bind(self.heard_queue, FAILURES_EXCHANGE, "#")
        self.heard: list[Heard] = []
        self.declared: list[str] = []

    def close(self) -> None:
        """Delete every queue it declared, and disconnect."""
        for name in self.declared:
            self.channel.queue_delete(name)
        self.connection.close()

    # --- queues ---------------------------------------------------------------------------

    def declare_stream(self, name: str, *, max_frames: int = STREAM_MAX_FRAMES) -> str:
        """Declare a stream queue as a scheduler does: bounded, rejecting publishes when full."""
        arguments = {"x-max-length": max_frames, "x-overflow": "reject-publish"}
        self.channel.queue_declare(name, arguments=arguments)
        self.declared.append(name)
        return name

    def declare_mailbox(self, name: str) -> str:
        self.channel.queue_declare(name, durable=True)
        self.declared.append(name)
        return name

    def depth(self, name: str) -> int:
        """The messages ready in a queue (not those a consumer holds unacked)."""
        return int(self.channel.queue_declare(name, passive=True).method.message_count)

    # --- what the scheduler sends -----------------------------------------------------------

    def publish_job(self, mailbox: str, job: Job) -> None:
        job.published = time.time()
        self.channel.basic_publish("", mailbox, job.SerializeToString(), mandatory=True)

    def send(self, queue: str, body: bytes) -> None:
        """Publish one frame's bytes, again while the stream is full, until it is taken."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                self.channel.basic_publish("", queue, body, mandatory=True)
                return
            except pika.exceptions.NackError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"stream {queue} stayed full for {WAIT_S:g} s") from None
                self.connection.sleep(0.01)

    def stop(self, flow_id: str, reason: str) -> None:
        self.channel.basic_publish(
            STOP_EXCHANGE, "", Stop(flow_id=flow_id, reason=reason).SerializeToString()
        )

    # --- what the executor sends ------------------------------------------------------------

    def poll(self) -> None:
        """Collect what the executor published since the last poll."""
        while True:
            method, _properties, body = self.channel.basic_get(self.heard_queue, auto_ack=True)
            if method is None:
                return
            kind: Any = FailureReport if method.exchange == FAILURES_EXCHANGE else Event
            message = kind.FromString(body)
            self.heard.append(Heard(method.exchange, method.routing_key, message))

    def wait_heard(self, match: Callable[[Heard], bool], what: str) -> Heard:
        """The first message heard that matches, waiting for it."""

        def find() -> Heard | None:
            self.poll()
            return next((h for h in self.heard if match(h)), None)

        return eventually(find, WAIT_S, what=what)

    def events(self, kind: str) -> list[Any]:
        """Every event of ``kind`` (heartbeat, started, ended, goodbye) heard so far."""
        self.poll()
        return [
            getattr(h.message, kind)
            for h in self.heard
            if isinstance(h.message, Event) and h.message.WhichOneof("kind") == kind
        ]

    def ended(self, flow_id: str, node: str) -> JobEnded:
        heard = self.wait_heard(lambda h: _is_ended(h, flow_id, node), f"job {node} to end")
        assert isinstance(heard.message, Event)
        assert heard.routing_key == f"job.ended.{flow_id[0]}", (
            "a job's ended event is routed to its flow's shard"
        )
        return heard.message.ended

    def failure(self, flow_id: str, node: str) -> FailureReport:
        heard = self.wait_heard(
            lambda h: _is_failure(h, flow_id, node), f"a failure report of job {node}"
        )
        assert isinstance(heard.message, FailureReport)
        assert heard.routing_key == f"{flow_id[0]}.{flow_id}", (
            "a failure report is routed by its flow's shard and id"
        )
        return heard.message

    def failures_before_end(self, flow_id: str, node: str) -> list[FailureReport]:
        """The failure reports of a job heard before its ended event (which must come)."""
        self.ended(flow_id, node)
        reports = []
        for heard in self.heard:
            if _is_ended(heard, flow_id, node):
                return reports
            if _is_failure(heard, flow_id, node):
                assert isinstance(heard.message, FailureReport)
                reports.append(heard.message)
        raise AssertionError("unreachable: the ended event was heard")

    def started(self, flow_id: str, node: str) -> None:
        heard = self.wait_heard(
            lambda h: (
                isinstance(h.message, Event)
                and h.message.WhichOneof("kind") == "started"
                and (h.message.started.job.flow_id, h.message.started.job.node) == (flow_id, node)
            ),
            f"job {node} to start",
        )
        assert heard.routing_key == f"job.started.{flow_id[0]}", (
            "a job's started event is routed to its flow's shard"
        )

    def heartbeat(self, match: Callable[[Heartbeat], bool], what: str) -> Heartbeat:
        """The first heartbeat heard from now on that matches."""
        start = len(self.heard)
        heard = self.wait_heard(
            lambda h: (
                self.heard.index(h) >= start
                and isinstance(h.message, Event)
                and h.message.WhichOneof("kind") == "heartbeat"
                and match(h.message.heartbeat)
            ),
            what,
        )
        assert isinstance(heard.message, Event)
        return heard.message.heartbeat

    def frames(self, queue: str, *, already: bool = False) -> list[Frame]:
        """Read a stream up to its end-of-stream frame, as its consumer would.

        Args:
            already: the stream must hold its end-of-stream now (its producer's job
                reported its end, which comes after its end-of-stream was confirmed).
        """
        frames: list[Frame] = []

        def take() -> bool:
            while not (frames and frames[-1].end_of_stream):
                method, _properties, body = self.channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return False
                frames.append(Frame.FromString(body))
            return True

        if already:
            assert take(), (
                f"{queue} holds no end-of-stream yet ({len(frames)} frames) although its "
                "producer reported its end: an end-of-stream is confirmed before the ended event"
            )
            return frames
        eventually(
            take, WAIT_S, what=lambda: f"end-of-stream on {queue} (got {len(frames)} frames)"
        )
        return frames


def _is_ended(heard: Heard, flow_id: str, node: str) -> bool:
    message = heard.message
    return (
        isinstance(message, Event)
        and message.WhichOneof("kind") == "ended"
        and (message.ended.job.flow_id, message.ended.job.node) == (flow_id, node)
    )


def _is_failure(heard: Heard, flow_id: str, node: str) -> bool:
    message = heard.message
    return isinstance(message, FailureReport) and (message.flow_id, message.node) == (
        flow_id,
        node,
    )


# --- job descriptors --------------------------------------------------------------------------


@dataclass
class Stream:
    """A stream the suite declared: its queue and its producer token."""

    queue: str
    token: str
    typename: str = TEXT

    def frame(self, items: list[bytes], seq: int, *, end: bool = False, **fields: Any) -> bytes:
        """A frame of this stream as its producer would send it (``fields`` override)."""
        values = {"token": self.token, "typename": self.typename, **fields}
        return Frame(items=items, seq=seq, end_of_stream=end, **values).SerializeToString()


def new_token() -> str:
    """A producer token as a scheduler makes one: 16 random bytes, hex."""
    return uuid.uuid4().hex


def stream_into(wire: Wire, flow_id: str, node: str, port: str, typename: str = TEXT) -> Stream:
    """Declare the stream feeding input ``node.port`` of a flow."""
    return Stream(wire.declare_stream(stream_queue(flow_id, node, port)), new_token(), typename)


def input_from(stream: Stream, edge: str = "up.text") -> Input:
    """An input reading ``stream``, produced by ``edge`` (``node.port``)."""
    return Input(typename=stream.typename, queue=stream.queue, edge=edge, token=stream.token)


def const_input(items: list[bytes], typename: str = TEXT) -> Input:
    return Input(typename=typename, consts=Consts(items=items))


def output_to(streams: list[Stream]) -> Output:
    """An output sending every frame to each of ``streams`` (one token for them all)."""
    token = streams[0].token
    assert all(s.token == token for s in streams), "one output, one producer token"
    return Output(typename=streams[0].typename, queues=[s.queue for s in streams], token=token)


def fan_out(wire: Wire, flow_id: str, targets: list[str], typename: str = TEXT) -> list[Stream]:
    """The streams of one output feeding the inputs ``targets`` (``node.port`` each)."""
    token = new_token()
    streams = []
    for target in targets:
        node, port = target.split(".")
        stream = stream_into(wire, flow_id, node, port, typename)
        stream.token = token
        streams.append(stream)
    return streams


def job_for(
    progdef: str,
    version: str,
    flow_id: str,
    node: str,
    inputs: dict[str, Input],
    outputs: dict[str, Output],
) -> Job:
    """The descriptor of one node's job, as a scheduler publishes it."""
    return Job(
        flow_id=flow_id,
        node=node,
        progdef=progdef,
        version=version,
        inputs=inputs,
        outputs=outputs,
        events_exchange=EVENTS_EXCHANGE,
        failures_exchange=FAILURES_EXCHANGE,
    )


def assert_stream(frames: list, token: str) -> None:
    """What every stream a producer sends must be: its typename, its token, seq 0, 1, 2…,
    end-of-stream on the last frame only."""
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert {f.typename for f in frames} == {TEXT}
    assert {f.token for f in frames} == {token}, "every frame carries the output's token"
    assert [f.end_of_stream for f in frames] == [False] * (len(frames) - 1) + [True]
