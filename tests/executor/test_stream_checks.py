"""What an input stream accepts: the next frame of its typename; items with unknown fields."""

from __future__ import annotations

import threading

import pytest

from executor.errors import StreamCorrupt
from executor.inbox import Inbox
from executor.inputs import InputStream
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import Text

TEXT = "dagyo.types.Text"


def stream_of(*frames: Frame) -> InputStream:
    inbox = Inbox(threading.Event())
    inbox.add_port("name")
    for frame in frames:
        inbox.put("name", frame.SerializeToString())
    return InputStream(port="name", edge="names.src -> hi.name", message_class=Text, inbox=inbox)


def test_an_item_with_unknown_fields_is_accepted_and_they_are_ignored() -> None:
    # Field 99 (varint 7): a field a newer Text might have.
    newer = Text(text="Ada").SerializeToString() + b"\x98\x06\x07"
    stream = stream_of(Frame(items=[newer], end_of_stream=True, typename=TEXT))
    assert [item.text for item in stream] == ["Ada"]


def test_a_repeated_frame_panics_naming_the_edge() -> None:
    item = Text(text="a").SerializeToString()
    frame = Frame(items=[item], seq=0, typename=TEXT)
    stream = stream_of(frame, frame)
    assert [item.text for item in stream.next_batch()] == ["a"]
    with pytest.raises(
        StreamCorrupt,
        match=r"^stream names.src -> hi.name: frame 0 arrived where frame 1 was due "
        r"\(a frame was repeated\)$",
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
