"""Streams inside a job: frames in (the Inbox), frames out (the FrameWriter), batching.

Items travel in frames: many serialized items per message (or, within one process, the
messages themselves: see :mod:`executor.core.frames`). A FrameWriter collects a port's items and
flushes a frame when it holds FRAME_MAX_BYTES or FRAME_MAX_ITEMS, when its first item has
lingered FRAME_LINGER_S (the Flusher thread sees to that, whatever the job is doing), and
at end-of-stream, which is an explicit frame.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from executor._runtime.flusher import Flusher
from executor._runtime.transport.base import FrameSink
from executor.core.constants import (
    FRAME_LINGER_S,
    FRAME_MAX_BYTES,
    FRAME_MAX_ITEMS,
    FRAME_RECEIVE_MAX_BYTES,
    FRAME_SIZE_SAMPLE_ITEMS,
    GC_GEN0_THRESHOLD,
    ITEM_MAX_BYTES,
    STREAM_MAX_FRAMES,
)
from executor.core.errors import DagyoError
from executor.core.frames import FrameForm, MessageFrame, StreamFrame
from executor.core.offload import Offload, Offloader, SerializedBytes
from executor.core.settings import env_number
from executor.pb.dagyo.types_pb2 import Bytes
from executor.pb.dagyo.v1.frame_pb2 import Frame, ObjectRef


@dataclass(frozen=True)
class StreamSettings:
    """Frame batching and stream bounds; tests and benchmarks shorten or widen them.

    ``frames`` says what frames are made of: bytes for a cluster (the default), messages
    or checked ones only on the memory transport (the embedded runner sets it).
    ``offload`` says where items past its threshold go (bytes and checked frames; frames
    of messages carry every item as it is, whatever its size).
    """

    frame_max_bytes: int = FRAME_MAX_BYTES
    frame_max_items: int = FRAME_MAX_ITEMS
    linger_s: float = FRAME_LINGER_S
    max_frames: int = STREAM_MAX_FRAMES
    frames: FrameForm = FrameForm.BYTES
    offload: Offload = field(default_factory=Offload)

    @classmethod
    def from_env(cls, *, default_objects: str = "") -> StreamSettings:
        """Read DAGYO_FRAME_MAX_BYTES, DAGYO_FRAME_MAX_ITEMS, DAGYO_FRAME_LINGER_S,
        DAGYO_OBJECTS (else ``default_objects``) and DAGYO_OFFLOAD_BYTES.

        Raises:
            ObjectStoreInvalid: for a DAGYO_OBJECTS that is no object store URL.
            DagyoError: naming a variable that is not a positive number, or past what a
                consumer takes in one frame (FRAME_MAX_ITEMS items, ITEM_MAX_BYTES bytes).
        """
        import os

        def number(name: str, default: float, most: float | None = None) -> float:
            why = ", the most a consumer takes in one frame (docs/protocol.md, Streams)"
            return env_number(os.environ, name, default, float, above=0, most=most, why_most=why)

        return cls(
            frame_max_bytes=int(number("DAGYO_FRAME_MAX_BYTES", FRAME_MAX_BYTES, ITEM_MAX_BYTES)),
            frame_max_items=int(number("DAGYO_FRAME_MAX_ITEMS", FRAME_MAX_ITEMS, FRAME_MAX_ITEMS)),
            linger_s=number("DAGYO_FRAME_LINGER_S", FRAME_LINGER_S),
            offload=Offload.from_env(default_url=default_objects),
        )


class FrameWriter:
    """Batches one output port's items into frames and sends them to a sink.

    :meth:`add` and :meth:`add_all` take messages, whatever ``settings.frames`` is:
    serialized for bytes frames (:meth:`append` and :meth:`extend` take those bytes), kept
    as they are for message frames, both for checked frames. A frame of messages counts
    its bytes from every FRAME_SIZE_SAMPLE_ITEMS-th item's size (the first one's
    included), so sizing costs no serialize per item: frames of items alike in size split
    where frames of bytes do.
    """

    def __init__(
        self,
        sink: FrameSink,
        *,
        settings: StreamSettings,
        flusher: Flusher,
        typename: str,
        token: str = "",
        offloader: Offloader | None = None,
    ) -> None:
        self._sink = sink
        self.typename = typename
        # The producer token every frame carries (the job descriptor's Output.token).
        self.token = token
        self._settings = settings
        self._max_bytes = settings.frame_max_bytes
        self._max_items = settings.frame_max_items
        # How many items a caller with many to send hands over at once (see extend).
        self.chunk_items = settings.frame_max_items
        self._flusher = flusher
        self.form = settings.frames
        # Serialized items past this many bytes go to the object store (a frame of
        # messages keeps every item as it is).
        self._offloader = offloader
        self._offload_above = (
            settings.offload.threshold
            if offloader is not None and self.form is not FrameForm.MESSAGES
            else ITEM_MAX_BYTES * 64
        )
        # Bytes items past the threshold are offloaded from their data (see add).
        self._large = Bytes if self._offload_above < ITEM_MAX_BYTES * 64 else None
        # The serialized ObjectRef of each offloaded item of the frame being filled.
        self._offloaded: list[bytes] = []
        self._lock = threading.Lock()
        # Serialized items (bytes and checked frames) or messages (message frames).
        self._items: list[Any] = []
        # Checked frames: the messages of _items, sent along to be checked.
        self._messages: list[Message] = []
        self._bytes = 0
        self._sample = 0  # message frames: the size of the last item sized
        self._first_at = 0.0
        self._seq = 0
        self.items_sent = 0
        self.frames_sent = 0
        self.closed = False
        # What the Flusher met flushing this writer's frame (see Flusher._flush); raised
        # to the job at its next add or close.
        self.failed: Exception | None = None
        # Monotonic time a blocking send began, 0.0 while none is under way: a send that
        # lasts is a stream that is full (see blocked_s).
        self._sending_since = 0.0

    def append(self, data: bytes) -> None:
        """Add one serialized item; flush when the frame is full.

        A frame that is not full is flushed by the Flusher once its first item has waited
        ``linger_s``, so this hot path reads no clock but for a frame's first item.

        Raises:
            Stopped: when the flow is stopped while the stream is full.
        """
        with self._lock:
            self._append_locked(data)

    def _append_locked(self, data: bytes | SerializedBytes, size: int = -1) -> None:
        """Add one serialized item (``data``, or a Bytes item of ``size`` serialized bytes
        to offload as it is read)."""
        items = self._items
        # An offloaded item counts its whole size: its frame goes at once, so a consumer
        # never holds more than one such item of a frame (with the default frame size).
        if size < 0:
            size = len(data)  # type: ignore[arg-type]
        self._bytes += size
        if size > self._offload_above:
            data = self._offload(data, len(items))
        items.append(data)
        count = len(items)
        if count == 1:
            self._first_at = time.monotonic()
            # After the append: the flusher forgets writers it finds empty.
            self._flusher.watch(self)
        if self._bytes >= self._max_bytes or count >= self._max_items:
            self._flush_locked(end=False, block=True)

    def add(self, message: Message) -> None:
        """Add one message (see the class); flush when the frame is full.

        Raises:
            Stopped: when the flow is stopped while the stream is full.
        """
        form = self.form
        if form is FrameForm.BYTES:
            if type(message) is self._large:
                # Its data (a copy) tells its size: ByteSize, as serializing, would hold
                # it twice more at once. One past the threshold is offloaded from it.
                serialized = SerializedBytes(message.data)  # type: ignore[attr-defined]
                if serialized.size > self._offload_above and not UnknownFieldSet(message):
                    with self._lock:
                        self._append_locked(serialized, serialized.size)
                    return
                del serialized
            self.append(message.SerializeToString())
        elif form is FrameForm.MESSAGES:
            self.add_all([message])
        else:
            with self._lock:
                self._messages.append(message)
                self._append_locked(message.SerializeToString())

    def add_all(self, messages: list[Message]) -> None:
        """Add several messages, flushing each time a frame fills up.

        Raises:
            Stopped: when the flow is stopped while the stream is full.
        """
        form = self.form
        if form is FrameForm.BYTES:
            self.extend([message.SerializeToString() for message in messages])
        elif form is FrameForm.CHECKED:
            with self._lock:
                for message in messages:
                    self._messages.append(message)
                    self._append_locked(message.SerializeToString())
        else:
            with self._lock:
                self._add_messages_locked(messages)

    def _add_messages_locked(self, messages: list[Message]) -> None:
        items, size, sample = self._items, self._bytes, self._sample
        fresh = not items
        max_bytes, max_items = self._max_bytes, self._max_items
        done, count = 0, len(messages)
        while done < count:
            position = len(items)
            if position % FRAME_SIZE_SAMPLE_ITEMS == 0:
                sample = messages[done].ByteSize()
            # The items up to the next one sized, as many as the frame takes.
            take = min(
                FRAME_SIZE_SAMPLE_ITEMS - position % FRAME_SIZE_SAMPLE_ITEMS,
                count - done,
                max_items - position,
            )
            if sample:
                take = min(take, -(-(max_bytes - size) // sample))  # until size >= max_bytes
            items.extend(messages[done : done + take])
            done += take
            size += take * sample
            if size >= max_bytes or len(items) >= max_items:
                self._bytes, self._sample = size, sample
                self._flush_locked(end=False, block=True)
                items, size, fresh = self._items, 0, True
        self._bytes, self._sample = size, sample
        if items and fresh:
            self._first_at = time.monotonic()
            self._flusher.watch(self)  # after the items are in: see Flusher

    def extend(self, data: list[bytes]) -> None:
        """Add several serialized items, flushing each time a frame fills up.

        Raises:
            Stopped: when the flow is stopped while the stream is full.
        """
        with self._lock:
            items, size = self._items, self._bytes
            fresh = not items
            max_bytes, max_items = self._max_bytes, self._max_items
            offload_above = self._offload_above
            for item in data:
                size += len(item)  # an offloaded item's whole size too: see _append_locked
                if len(item) > offload_above:
                    item = self._offload(item, len(items))
                items.append(item)
                if size >= max_bytes or len(items) >= max_items:
                    self._bytes = size
                    self._flush_locked(end=False, block=True)
                    items, size, fresh = self._items, 0, True
            self._bytes = size
            if items and fresh:
                self._first_at = time.monotonic()
                self._flusher.watch(self)  # after the items are in: see Flusher

    def _offload(self, data: bytes | SerializedBytes, index: int) -> bytes:
        """Put one large item in the object store; return what the frame carries for it
        (an empty item; its reference goes beside, in ``_offloaded``)."""
        assert self._offloader is not None
        source = data if isinstance(data, bytes) else cast(BinaryIO, data)
        self._offloaded.append(self._offloader.put(source, index))
        return b""

    @property
    def holds_items(self) -> bool:
        """True while items wait in the frame being filled."""
        return bool(self._items)

    def flush_if_lingering(self, now: float) -> bool:
        """Flush a lingering frame if the stream has room; never waits.

        Returns:
            True when nothing lingers any more (flushed, empty, or closed).
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.closed or not self._items:
                return True
            if now - self._first_at < self._settings.linger_s:
                return False
            return self._flush_locked(end=False, block=False)
        finally:
            self._lock.release()

    def flush_nowait(self) -> None:
        """Send the items held now if the stream has room; never waits for room."""
        if self._lock.acquire(blocking=False):
            try:
                if self._items and not self.closed:
                    self._flush_locked(end=False, block=False)
            finally:
                self._lock.release()

    def blocked_s(self, now: float) -> float:
        """Seconds the port has waited, as of ``now``, for a full stream to take a frame."""
        since = self._sending_since
        return now - since if since else 0.0

    def close(self) -> None:
        """Send what is left and end-of-stream, waiting for room."""
        with self._lock:
            if not self.closed:
                self._flush_locked(end=True, block=True)
                self.closed = True
        self._sink.close()

    def _flush_locked(self, *, end: bool, block: bool) -> bool:
        failed = self.failed
        if failed is not None:
            raise failed
        if not self._items and not end:
            return True
        frame = self._frame(end)
        if block:
            self._sending_since = time.monotonic()
            try:
                self._sink.send(frame, block=True)
            finally:
                self._sending_since = 0.0
        elif not self._sink.send(frame, block=False):
            return False
        self._seq += 1
        self.frames_sent += 1
        self.items_sent += len(self._items)
        self._items = []
        self._messages = []
        self._offloaded = []
        self._bytes = 0
        return True

    def _frame(self, end: bool) -> StreamFrame:
        if self.form is FrameForm.MESSAGES:
            return MessageFrame(
                self._items, end_of_stream=end, seq=self._seq, typename=self.typename
            )
        data = Frame(
            items=self._items,
            end_of_stream=end,
            seq=self._seq,
            typename=self.typename,
            token=self.token,
            offloaded=[ObjectRef.FromString(reference) for reference in self._offloaded],
        ).SerializeToString()
        if len(data) > FRAME_RECEIVE_MAX_BYTES:
            raise DagyoError(
                f"a frame of {self.typename} items came to {len(data)} bytes, more than the "
                f"{FRAME_RECEIVE_MAX_BYTES} a consumer takes (docs/protocol.md, Streams): send "
                f"items of at most {ITEM_MAX_BYTES} bytes"
            )
        if self.form is FrameForm.BYTES:
            return data
        return MessageFrame(
            self._messages, end_of_stream=end, seq=self._seq, typename=self.typename, data=data
        )


def tune_gc() -> None:
    """Tune the garbage collector for a process that streams items (see GC_GEN0_THRESHOLD).

    For processes dagyo owns (an executor, `dagyo run`), after their imports: everything
    loaded so far is frozen out of the collector's way, and the young generation is
    collected less often.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, older, oldest)
