"""Frames of messages (within one process) keep a stream's bounds without sizing every item."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from executor._runtime.stream import FrameWriter, StreamSettings
from executor.core.constants import FRAME_SIZE_SAMPLE_ITEMS
from executor.core.frames import FrameForm, MessageFrame
from executor.core.types import Bytes


class Sink:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    def send(self, frame: Any, *, block: bool = True) -> bool:
        self.frames.append(frame)
        return True

    def close(self) -> None:
        pass


class NoLinger:
    """A flusher that never flushes: every frame here is split by its bounds alone."""

    def watch(self, writer: FrameWriter) -> None:
        pass


def expected_frames(sizes: list[int], *, max_bytes: int, max_items: int) -> list[int]:
    """Items per frame: each item counts as the size of the last one sized, sizing every
    FRAME_SIZE_SAMPLE_ITEMS-th item of a frame from its first; a frame is full at
    max_items or at max_bytes."""
    frames, held, counted, size = [], 0, 0, 0
    for item in sizes:
        if held % FRAME_SIZE_SAMPLE_ITEMS == 0:
            size = item
        held += 1
        counted += size
        if counted >= max_bytes or held >= max_items:
            frames.append(held)
            held, counted = 0, 0
    return [*frames, held]  # the last frame carries end-of-stream


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 10, 100, 3000, 40_000]), min_size=1, max_size=300),
    max_bytes=st.sampled_from([200, 1000, 5000, 100_000, 10**9]),
    max_items=st.sampled_from([7, 16, 128]),
    sends=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
)
def test_frames_of_messages_split_where_their_sampled_sizes_say(
    sizes: list[int], max_bytes: int, max_items: int, sends: list[int]
) -> None:
    sink = Sink()
    writer = FrameWriter(
        sink,  # type: ignore[arg-type]
        settings=StreamSettings(
            frame_max_bytes=max_bytes, frame_max_items=max_items, frames=FrameForm.MESSAGES
        ),
        flusher=NoLinger(),  # type: ignore[arg-type]
        typename="dagyo.types.Bytes",
    )
    messages = [Bytes(data=bytes(size)) for size in sizes]
    sent = 0
    for index, count in enumerate(sends * (len(messages) // sum(sends) + 1)):
        if sent >= len(messages):
            break
        batch = messages[sent : sent + count]
        if index % 3 == 2:
            for message in batch:
                writer.add(message)
        else:
            writer.add_all(batch)
        sent += len(batch)
    writer.close()
    assert all(type(frame) is MessageFrame for frame in sink.frames)
    assert [len(frame.items) for frame in sink.frames] == expected_frames(
        [message.ByteSize() for message in messages], max_bytes=max_bytes, max_items=max_items
    )
    assert [item for frame in sink.frames for item in frame.items] == messages
    assert [frame.seq for frame in sink.frames] == list(range(len(sink.frames)))
    assert [frame.end_of_stream for frame in sink.frames][-1]
