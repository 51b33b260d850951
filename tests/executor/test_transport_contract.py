"""The transport contract, run alike on the memory and the rabbitmq transport.

Whole flows run on both in tests/test_transports.py; these tests hold the transports to
the same behaviour one method at a time, so the embedded runner and a cluster cannot
drift apart: order, fan-out, the bound of a full stream, non-blocking sends, stop, detach
and end-of-stream.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.stream import FrameWriter, StreamSettings
from executor._runtime.transport.base import Streams, Transport
from executor._runtime.transport.memory import MemoryTransport
from executor._runtime.transport.rabbitmq import ChannelPool, RabbitTransport
from executor.core.amqp import AmqpThread
from executor.core.errors import Stopped
from executor.core.topology import stream_arguments
from executor.inputs import InputStream
from executor.pb.dagyo.types_pb2 import Text
from tests.waiting import eventually

# Small bounds, the same on both transports, so that filling a stream is quick.
MAX_FRAMES = 3
PREFETCH_FRAMES = 2
BOUND = MAX_FRAMES + PREFETCH_FRAMES
DEADLINE_S = 10.0


@dataclass
class Twin:
    """One transport under test, and what the test needs besides its interface."""

    transport: Transport
    declare: Callable[[str], None]  # make a stream queue (a scheduler's job on a cluster)
    depth: Callable[[str], int]  # frames waiting in a stream queue, not yet delivered
    opened: list[Streams] = field(default_factory=list)

    def open(self, stop: threading.Event | None = None) -> Streams:
        streams = self.transport.open(stop=stop or threading.Event())
        self.opened.append(streams)
        return streams

    def queue(self) -> str:
        name = f"dagyo.flow.contract-{uuid.uuid4().hex[:8]}.in.node.port"
        self.declare(name)
        return name


@pytest.fixture(scope="module")
def amqp(broker_url: str) -> Iterator[tuple[AmqpThread, pika.BlockingConnection]]:
    io = AmqpThread(broker_url, name="contract-io", on_connect=lambda _: None)
    io.start()
    admin = pika.BlockingConnection(pika.URLParameters(broker_url))
    yield io, admin
    admin.close()
    io.close()


@pytest.fixture(params=["memory", "rabbitmq"])
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    if request.param == "memory":
        memory = MemoryTransport(max_frames=MAX_FRAMES, prefetch_frames=PREFETCH_FRAMES)
        twin = Twin(memory, declare=lambda _: None, depth=memory.depth)
        yield twin
        for streams in twin.opened:
            streams.close()
        return
    io, admin = request.getfixturevalue("amqp")
    channel = admin.channel()
    declared: list[str] = []

    def declare(queue: str) -> None:
        channel.queue_declare(queue, arguments=stream_arguments(MAX_FRAMES))
        declared.append(queue)

    def depth(queue: str) -> int:
        return int(channel.queue_declare(queue, passive=True).method.message_count)

    twin = Twin(
        RabbitTransport(ChannelPool(io, ready=0, prefetch_frames=PREFETCH_FRAMES)),
        declare=declare,
        depth=depth,
    )
    yield twin
    for streams in twin.opened:
        streams.close()
    for queue in declared:
        channel.queue_delete(queue)
    channel.close()


def frames(count: int) -> list[bytes]:
    return [b"frame-%d" % i for i in range(count)]


def take_all(inbox: Inbox, port: str, count: int) -> list[bytes]:
    return [inbox.take(port) for _ in range(count)]


@dataclass
class Reader:
    """A job reading one queue: its stop signal, its inbox and its streams."""

    stop: threading.Event
    inbox: Inbox
    streams: Streams


def reader(twin: Twin, queue: str, port: str = "in") -> Reader:
    stop = threading.Event()
    inbox = Inbox(stop)
    inbox.add_port(port)
    streams = twin.open(stop)
    streams.attach(queue, inbox, port)
    return Reader(stop, inbox, streams)


def attached(twin: Twin, queue: str, port: str = "in") -> Inbox:
    return reader(twin, queue, port).inbox


def in_thread(function: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``function`` in a thread; its result or exception lands in the list."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def send_until_refused(sink: Any, frame: bytes = b"x") -> int:
    """Send without blocking until the stream stays full; return how many it took.

    A broker delivers prefetched frames a moment after they were published, so a refusal
    is believed only when it persists.
    """
    accepted = 0
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        if sink.send(frame, block=False):
            accepted += 1
            quiet_since = time.monotonic()
        else:
            time.sleep(0.02)
    return accepted


def test_a_stream_delivers_many_frames_in_the_order_sent(twin: Twin) -> None:
    queue = twin.queue()
    inbox = attached(twin, queue)
    sink = twin.open().sink([queue])
    sent = frames(500)
    producer, outcome = in_thread(lambda: [sink.send(frame) for frame in sent])
    assert take_all(inbox, "in", len(sent)) == sent
    producer.join(DEADLINE_S)
    assert outcome == [[True] * len(sent)]


def test_an_output_feeding_two_queues_gives_each_every_frame_in_order(twin: Twin) -> None:
    first, second = twin.queue(), twin.queue()
    inboxes = [attached(twin, first), attached(twin, second)]
    sink = twin.open().sink([first, second])
    sent = frames(200)
    producer, outcome = in_thread(lambda: [sink.send(frame) for frame in sent])
    readers = [in_thread(lambda inbox=inbox: take_all(inbox, "in", len(sent))) for inbox in inboxes]
    for reader, received in readers:
        reader.join(DEADLINE_S)
        assert received == [sent]
    producer.join(DEADLINE_S)
    assert outcome == [[True] * len(sent)]


def test_a_stream_nobody_reads_yet_holds_max_frames(twin: Twin) -> None:
    queue = twin.queue()
    sink = twin.open().sink([queue])
    assert send_until_refused(sink) == MAX_FRAMES
    assert twin.depth(queue) == MAX_FRAMES
    inbox = attached(twin, queue)
    assert take_all(inbox, "in", MAX_FRAMES) == [b"x"] * MAX_FRAMES


def test_a_consumer_that_takes_nothing_holds_the_stream_to_its_bound(twin: Twin) -> None:
    queue = twin.queue()
    inbox = attached(twin, queue)
    sink = twin.open().sink([queue])
    assert send_until_refused(sink) == BOUND, "max_frames waiting plus the prefetched ones"
    assert twin.depth(queue) == MAX_FRAMES
    inbox.take("in")
    eventually(lambda: sink.send(b"x", block=False), DEADLINE_S, what="a taken frame making room")


def test_a_blocking_send_to_a_full_stream_waits_then_raises_stopped_on_stop(twin: Twin) -> None:
    queue = twin.queue()
    stop = threading.Event()
    sink = twin.open(stop).sink([queue])
    assert send_until_refused(sink) == MAX_FRAMES
    producer, outcome = in_thread(lambda: sink.send(b"one too many"))
    producer.join(0.5)
    assert producer.is_alive(), "a send to a full stream waits"
    stop.set()
    producer.join(DEADLINE_S)
    assert len(outcome) == 1 and isinstance(outcome[0], Stopped)
    assert twin.depth(queue) == MAX_FRAMES


def test_a_reader_waiting_for_a_frame_raises_stopped_on_stop(twin: Twin) -> None:
    waiting = reader(twin, twin.queue())
    thread, outcome = in_thread(lambda: waiting.inbox.take("in"))
    thread.join(0.3)
    assert thread.is_alive()
    waiting.stop.set()
    waiting.inbox.wake()
    thread.join(DEADLINE_S)
    assert len(outcome) == 1 and isinstance(outcome[0], Stopped)


def test_a_non_blocking_send_sends_nothing_when_every_queue_is_full(twin: Twin) -> None:
    first, second = twin.queue(), twin.queue()
    sink = twin.open().sink([first, second])
    assert send_until_refused(sink) == MAX_FRAMES
    assert sink.send(b"refused", block=False) is False
    assert [twin.depth(first), twin.depth(second)] == [MAX_FRAMES, MAX_FRAMES]


def test_a_non_blocking_send_one_queue_took_waits_for_the_others(twin: Twin) -> None:
    full, free = twin.queue(), twin.queue()
    filler = twin.open().sink([full])
    assert send_until_refused(filler) == MAX_FRAMES
    sink = twin.open().sink([full, free])
    sender, outcome = in_thread(lambda: sink.send(b"both", block=False))
    sender.join(0.5)
    assert sender.is_alive(), "once a queue took the frame, the full one is waited for"
    assert twin.depth(free) == 1
    inbox = attached(twin, full)
    assert take_all(inbox, "in", MAX_FRAMES + 1) == [b"x"] * MAX_FRAMES + [b"both"]
    sender.join(DEADLINE_S)
    assert outcome == [True]


def test_after_detach_frames_wait_in_the_stream_for_another_consumer(twin: Twin) -> None:
    queue = twin.queue()
    consumer = reader(twin, queue)
    sink = twin.open().sink([queue])
    for frame in frames(3):
        sink.send(frame)
    assert take_all(consumer.inbox, "in", 3) == frames(3)
    consumer.streams.detach(queue)
    sink.send(b"after-0")
    sink.send(b"after-1")
    eventually(lambda: twin.depth(queue) == 2, DEADLINE_S, what="two frames waiting after detach")
    later = attached(twin, queue)
    assert take_all(later, "in", 2) == [b"after-0", b"after-1"]


def test_items_arrive_in_order_then_end_of_stream(twin: Twin) -> None:
    queue = twin.queue()
    inbox = attached(twin, queue)
    stream = InputStream(port="in", edge="a.out -> b.in", message_class=Text, inbox=inbox)
    flusher = Flusher()
    writer = FrameWriter(
        twin.open().sink([queue]),
        settings=StreamSettings(frame_max_items=7),
        flusher=flusher,
        typename="dagyo.types.Text",
    )
    texts = [f"item-{i}" for i in range(100)]

    def produce() -> None:
        for text in texts:
            writer.append(Text(text=text).SerializeToString())
        writer.close()

    producer, outcome = in_thread(produce)
    try:
        assert [item.text for item in stream] == texts
        assert stream.ended
        producer.join(DEADLINE_S)
        assert outcome == [None]
    finally:
        flusher.close()


def test_closing_a_jobs_streams_stops_their_delivery(twin: Twin) -> None:
    queue = twin.queue()
    reader(twin, queue).streams.close()
    sink = twin.open().sink([queue])
    sink.send(b"later")
    eventually(lambda: twin.depth(queue) == 1, DEADLINE_S, what="the frame waiting, undelivered")
