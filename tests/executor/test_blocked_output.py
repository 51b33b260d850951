"""A port waiting for a full stream says for how long (heartbeats carry it: the scheduler's
deadlock check), and says 0 again once the stream took the frame."""

from __future__ import annotations

import threading
import time

from executor._runtime.flusher import Flusher
from executor._runtime.stream import FrameWriter, StreamSettings
from tests.waiting import eventually


class FullSink:
    """A stream that takes nothing until it is told there is room."""

    def __init__(self) -> None:
        self.room = threading.Event()
        self.frames: list[bytes] = []

    def send(self, frame: bytes, *, block: bool = True) -> bool:
        if not block and not self.room.is_set():
            return False
        self.room.wait()
        self.frames.append(frame)
        return True

    def close(self) -> None:
        pass


def test_a_port_waiting_on_a_full_stream_says_how_long_then_zero_once_it_took_the_frame() -> None:
    sink = FullSink()
    flusher = Flusher()
    writer = FrameWriter(
        sink, settings=StreamSettings(frame_max_items=1), flusher=flusher, typename="t.T"
    )
    try:
        assert writer.blocked_s(time.monotonic()) == 0.0
        sender = threading.Thread(target=writer.append, args=(b"x",))
        sender.start()
        eventually(lambda: writer.blocked_s(time.monotonic()) > 0, what="the port waiting")
        # It counts from when it began to wait, before now: a minute from now, over a minute.
        assert writer.blocked_s(time.monotonic() + 60) >= 60
        sink.room.set()
        sender.join(5)
        assert not sender.is_alive()
        assert len(sink.frames) == 1
        assert writer.blocked_s(time.monotonic()) == 0.0
    finally:
        flusher.close()
