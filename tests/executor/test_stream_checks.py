"""What an input stream accepts: the next frame of its typename; items with unknown fields."""

from __future__ import annotations

import threading

import pytest

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.job import JobRun, execute
from executor._runtime.program import load_program
from executor._runtime.stream import StreamSettings
from executor._runtime.transport.memory import MemoryTransport
from executor.core.constants import FRAME_MAX_BYTES, FRAME_MAX_ITEMS, FRAME_RECEIVE_MAX_BYTES
from executor.core.errors import StreamCorrupt
from executor.core.progdef import load_catalogue
from executor.core.types import Text
from executor.inputs import InputStream
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Input, Job
from tests.conftest import PROGDEFS

TEXT = "dagyo.types.Text"


def stream_of(*frames: Frame, token: str = "") -> InputStream:
    inbox = Inbox(threading.Event())
    inbox.add_port("name")
    for frame in frames:
        inbox.put("name", frame.SerializeToString())
    return InputStream(
        port="name", edge="names.src -> hi.name", message_class=Text, inbox=inbox, token=token
    )


def test_an_item_with_unknown_fields_is_accepted_and_they_are_ignored() -> None:
    # Field 99 (varint 7): a field a newer Text might have.
    newer = Text(text="Ada").SerializeToString() + b"\x98\x06\x07"
    stream = stream_of(Frame(items=[newer], end_of_stream=True, typename=TEXT))
    assert [item.text for item in stream] == ["Ada"]


def test_a_frame_delivered_again_with_the_same_bytes_is_dropped() -> None:
    # A producer publishes a frame again after a broker alarm, or the broker delivers it
    # again after a reconnection: the same seq, the same bytes.
    item = Text(text="a").SerializeToString()
    frame = Frame(items=[item], seq=0, typename=TEXT)
    stream = stream_of(frame, frame, Frame(seq=1, end_of_stream=True, typename=TEXT))
    assert [item.text for item in stream] == ["a"]


def test_a_different_frame_under_a_seq_taken_panics_naming_the_edge() -> None:
    first = Frame(items=[Text(text="a").SerializeToString()], seq=0, typename=TEXT)
    other = Frame(items=[Text(text="forged").SerializeToString()], seq=0, typename=TEXT)
    stream = stream_of(first, other)
    assert [item.text for item in stream.next_batch()] == ["a"]
    with pytest.raises(
        StreamCorrupt,
        match=r"^stream names.src -> hi.name: frame 0 arrived again with other contents than "
        r"the frame 0 taken already \(a different frame under a seq already taken\)$",
    ):
        stream.next_batch()


def test_a_frame_without_the_producer_token_panics_and_a_real_count_stays_true() -> None:
    # An empty end-of-stream at seq 0, forged ahead of the real items, made a count of 4
    # report 0: without the token it panics instead.
    items = [Text(text=str(i)).SerializeToString() for i in range(4)]
    forged = Frame(end_of_stream=True, seq=0, typename=TEXT)
    real = Frame(items=items, seq=0, end_of_stream=True, typename=TEXT, token="0f" * 16)
    stream = stream_of(forged, real, token="0f" * 16)
    with pytest.raises(StreamCorrupt, match=r"without the producer token"):
        stream.next_batch()
    real = stream_of(Frame(items=items, seq=0, end_of_stream=True, typename=TEXT, token="0f" * 16))
    real._position.token = "0f" * 16
    assert len(list(real)) == 4


def test_a_frame_past_the_bounds_panics_naming_the_edge_before_it_is_decoded() -> None:
    inbox = Inbox(threading.Event())
    inbox.add_port("name")
    # Two-byte items, more of them than a frame may hold: refused by counting, unparsed.
    many = Frame(items=[b"\n\x00"] * (FRAME_MAX_ITEMS + 1), typename=TEXT)
    inbox.put("name", many.SerializeToString() + b"\x0a\x00" * (2 * FRAME_MAX_BYTES))
    inbox.put("name", b"\x0a" + b"\xff" * 9 + b"\x01" + b"\x00" * FRAME_RECEIVE_MAX_BYTES)
    stream = InputStream(port="name", edge="names.src -> hi.name", message_class=Text, inbox=inbox)
    with pytest.raises(
        StreamCorrupt,
        match=rf"^stream names.src -> hi.name: a frame of more than {FRAME_MAX_ITEMS} items",
    ):
        stream.next_batch()
    with pytest.raises(
        StreamCorrupt,
        match=rf"^stream names.src -> hi.name: a frame of \d+ bytes is larger than the "
        rf"{FRAME_RECEIVE_MAX_BYTES} a frame may be",
    ):
        stream.next_batch()


def test_a_frame_without_a_typename_panics_naming_the_edge() -> None:
    stream = stream_of(Frame(items=[Text(text="a").SerializeToString()]))
    with pytest.raises(
        StreamCorrupt,
        match=r"^stream names.src -> hi.name: a frame of no typename arrived on a stream of "
        r"dagyo.types.Text$",
    ):
        stream.next_batch()


@pytest.mark.parametrize("after", ["a second end-of-stream", "a frame after it"])
def test_what_reaches_a_job_after_its_inputs_end_of_stream_panics_it(after: str) -> None:
    program = load_program(load_catalogue(PROGDEFS)["count"])
    program.start()
    transport = MemoryTransport()
    token = "0f" * 16
    stream, export = "dagyo.flow.f.in.n.items", "dagyo.flow.f.export.total"
    items = [Text(text=str(i)).SerializeToString() for i in range(4)]
    for frame in (
        Frame(items=items, seq=0, end_of_stream=True, typename=TEXT, token=token),
        Frame(seq=1, end_of_stream=after.startswith("a second"), typename=TEXT, token=token),
    ):
        assert transport.queue(stream).offer(frame.SerializeToString())
    job = Job(flow_id="f", node="n", progdef="count")
    job.inputs["items"].CopyFrom(Input(typename=TEXT, queue=stream, edge="s.src", token=token))
    job.outputs["total"].typename = "dagyo.types.Int64"
    job.outputs["total"].queues.append(export)
    flusher = Flusher()
    try:
        failure = execute(
            JobRun(job),
            lambda: program,
            transport,
            flusher=flusher,
            settings=StreamSettings(),
            executor_id="count-1",
        )
    finally:
        flusher.close()
    assert failure is not None, f"{after} went unnoticed"
    assert failure.error == ("StreamCorrupt: stream s.src -> n.items: frame 1 after end-of-stream")
