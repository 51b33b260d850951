"""Input streams: a job's input ports, their frames taken from its inbox, decoded and checked.

The author iterates an :class:`InputStream` (or several at once, :func:`merge`); the runtime
feeds it frames and checks each one's typename, its place in the stream and, for frames
of messages passed in process, that no item was changed after it was sent.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, BinaryIO, Protocol

from google.protobuf.message import Message

from executor.core.errors import (
    DagyoError,
    DecodeError,
    ItemChanged,
    StreamCorrupt,
)
from executor.core.framecheck import StreamPosition, admit, check_count, check_size
from executor.core.frames import MessageFrame, StreamFrame, decode_frame, first_changed
from executor.core.types import frame_class_of
from executor.pb.dagyo.v1.frame_pb2 import ObjectRef

# Makes a blocking call (a port's next frame, a send) off the event loop, for an async def
# run(job): (function, *args) -> awaitable of its result (the runtime's Bridge.call).
RunBlocking = Callable[..., Awaitable[Any]]

# Fetches and checks the serialized item an ObjectRef stands for (executor.core.offload.fetch
# with the job's store and flow): (reference, where=the stream) -> bytes.
Fetch = Callable[..., bytes]


class FrameSource(Protocol):
    """What input ports need of the runtime: the job's inbox, which hands out each port's
    frames in the order they came (the runtime's Inbox)."""

    def take(self, port: str) -> StreamFrame:
        """The next frame of one port, waiting for it.

        Raises:
            Stopped: when the job is told to stop while it waits.
        """
        ...

    def take_any(self, ports: Iterable[str]) -> tuple[str, StreamFrame]:
        """The next frame of any of the ports, and its port, waiting for one.

        Raises:
            Stopped: when the job is told to stop while it waits.
        """
        ...


class InputStream:
    """One input port: iterate it for its items, in the order they were sent.

    Iteration ends at end-of-stream. Each input can be iterated once. Within one process
    the items are the very messages sent (see :mod:`executor.core.frames`): never change one.

    Args:
        node: the receiving node, named when it changed an item it received (checked
            frames, ``DAGYO_EMBEDDED_SERIALIZE=1``).
        token: the producer token the stream's frames must carry (the job descriptor's
            ``Input.token``); empty: none is checked.
        fetch: reads an offloaded item (see :data:`Fetch`); None: a frame holding one
            panics.
        open_bytes: opens an offloaded ``dagyo.types.Bytes`` item as a file of its data
            (``executor.core.offload.open_bytes`` with the job's store and flow), for
            :meth:`files`.
        run_blocking: how an ``async def run(job)`` waits for the next frame (see
            :data:`RunBlocking`); None: ``async for`` is refused.
    """

    def __init__(
        self,
        *,
        port: str,
        edge: str,
        message_class: type[Message],
        inbox: FrameSource | None,
        consts: tuple[bytes, ...] | None = None,
        node: str = "",
        token: str = "",
        fetch: Fetch | None = None,
        open_bytes: Callable[..., Any] | None = None,
        run_blocking: RunBlocking | None = None,
    ) -> None:
        self.port = port
        self._run_blocking = run_blocking
        self._fetch = fetch
        self._open_bytes = open_bytes
        self.edge = edge
        self.node = node
        self.message_class = message_class
        self.typename = message_class.DESCRIPTOR.full_name
        self._frame_class = frame_class_of(message_class)
        self._inbox = inbox
        self._consts = consts
        self.ended = False
        self.items_received = 0
        self._position = StreamPosition(self.typename, token)
        # Checked frames: the last one taken (its messages, their bytes, our copies, its
        # seq), checked again when the next is taken and at the end.
        self._taken: tuple[list[Any], list[bytes], list[Any], int] | None = None

    def __iter__(self) -> Iterator[Any]:
        while not self.ended:
            yield from self.next_batch()

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for item in job.inputs["name"]`` in an ``async def run(job)``: the same
        items, in order, the event loop free while the next frame is awaited.

        Raises:
            DagyoError: in a plain ``def run(job)`` (use ``for``).
        """
        return self._async_items()

    async def _async_items(self) -> AsyncIterator[Any]:
        run_blocking = self._run_blocking
        if run_blocking is None:
            raise DagyoError(
                f"stream {self.edge}: async for reads the inputs of an async def run(job); "
                "in a plain def run(job) use for"
            )
        while not self.ended:
            for item in await run_blocking(self.next_batch):
                yield item

    def next_batch(self) -> list[Any]:
        """Return the items of the next frame (possibly none); sets ``ended`` at the end.

        Raises:
            DecodeError: naming the edge, when an item is not of the port's typename.
            Stopped: when the flow is stopped while waiting.
        """
        if self.ended:
            return []
        if self._consts is not None:
            self.ended = True
            return self.decode(list(self._consts))
        assert self._inbox is not None
        return self.decode_frame(self._inbox.take(self.port))

    def files(self) -> Iterator[BinaryIO]:
        """Each item's ``data`` as a file to read, in order (a ``dagyo.types.Bytes`` input).

        An offloaded item is read from the object store as the file is read, so an item of
        gigabytes never sits in memory whole; its size and SHA-256 are checked when its end
        is read (``StreamCorrupt`` naming the edge when they differ). Other items are in
        memory already. Close each file when done with it.

        Raises:
            DagyoError: for an input of another typename.
        """
        if self.typename != "dagyo.types.Bytes":
            raise DagyoError(
                f"stream {self.edge}: files() reads dagyo.types.Bytes items, and this input "
                f"is of {self.typename}: iterate it instead"
            )
        while not self.ended:
            if self._consts is not None or self._inbox is None:
                items = self.next_batch()
            else:
                items = self.decode_frame(self._inbox.take(self.port), lazy=True)
            for item in items:
                file: Any = item if isinstance(item, io.RawIOBase) else io.BytesIO(item.data)
                yield file

    def decode_frame(self, data: StreamFrame, *, lazy: bool = False) -> list[Any]:
        """Decode one frame taken from the inbox for this port, with all its items.

        Args:
            lazy: leave offloaded items in the store: each is a file reading its data
                (see :meth:`files`), not a message.

        Raises:
            DecodeError: naming the edge, for a malformed frame or item.
            ItemChanged: naming the edge, for a checked frame whose sender changed an item
                after sending it, or when this job changed an item of the frame before.
        """
        if type(data) is MessageFrame:
            if data.data:
                return self._decode_checked(data)
            self._check(data, None)
            if data.end_of_stream:
                self.ended = True
            items = list(data.items)
            self.items_received += len(items)
            return items
        assert isinstance(data, bytes)
        check_size(data, self.where)
        try:
            frame: Any = self._frame_class.FromString(data)
        except Exception:
            # Which is it: the frame, or an item? Only worth finding out on the error path.
            self.decode(decode_frame(data, self.edge).items)
            raise
        check_count(len(frame.items), self.where)
        if not self._check(frame, data):
            return []  # the very frame taken already, delivered again: dropped
        if frame.end_of_stream:
            self.ended = True
        items = list(frame.items)
        for raw in frame.offloaded:
            reference = ObjectRef.FromString(raw)
            if lazy and self._open_bytes is not None and reference.index < len(items):
                items[reference.index] = self._open_bytes(reference, where=self.where)
                continue
            index, data = self._offloaded(reference, len(items))
            items[index] = self.decode([data])[0]
            self.items_received -= 1  # decode counted it: it is counted with the frame's
        self.items_received += len(items)
        return items

    def _offloaded(self, reference: ObjectRef, count: int) -> tuple[int, bytes]:
        """(index, serialized item) of an offloaded item of a frame of ``count`` items.

        Raises:
            StreamCorrupt: naming the edge, for a reference past the frame's items, or one
                that does not check (see executor.core.offload.fetch).
        """
        if reference.index >= count:
            raise StreamCorrupt(
                f"{self.where}: a frame of {count} items refers to an offloaded item "
                f"{reference.index}"
            )
        if self._fetch is None:
            raise StreamCorrupt(f"{self.where}: a frame holds an offloaded item, unexpected here")
        return reference.index, self._fetch(reference, where=self.where)

    def _decode_checked(self, frame: MessageFrame) -> list[Any]:
        """The items of a checked frame: copies parsed from its bytes, as on a cluster."""
        self.check_unchanged()
        check_size(frame.data, self.where)
        parsed = decode_frame(frame.data, self.edge)
        check_count(len(parsed.items), self.where)
        if not self._check(parsed, frame.data):
            return []
        sent = list(parsed.items)
        for reference in parsed.offloaded:
            index, data = self._offloaded(reference, len(sent))
            sent[index] = data
        items = self.decode(sent)
        self._check_sent(frame.items, sent, parsed.seq)
        if parsed.end_of_stream:
            self.ended = True
        self._taken = (frame.items, sent, items, parsed.seq)
        return items

    def check_unchanged(self) -> None:
        """Check that the last checked frame taken still holds what was sent (else nothing).

        Raises:
            ItemChanged: naming the edge and who changed which item.
        """
        if self._taken is None:
            return
        messages, sent, copies, seq = self._taken
        self._taken = None
        self._check_sent(messages, sent, seq)
        index = first_changed(copies, sent)
        if index >= 0:
            raise ItemChanged(
                f"stream {self.edge}: {self.node or 'the receiver'} changed item {index} of "
                f"frame {seq} it received on port {self.port}: an item must not be changed "
                "once it was sent; return a new message (or change a copy: new = "
                "type(item)(); new.CopyFrom(item))"
            )

    def _check_sent(self, messages: list[Any], sent: list[bytes], seq: int) -> None:
        index = first_changed(messages, sent)
        if index >= 0:
            sender = self.edge.partition(" -> ")[0]
            raise ItemChanged(
                f"stream {self.edge}: {sender} changed item {index} of frame {seq} after "
                "sending it: an item must not be changed once it was sent; build a new "
                "message for each send"
            )

    @property
    def where(self) -> str:
        """The stream as its errors name it: ``stream NODE.PORT -> NODE.PORT``."""
        return f"stream {self.edge}"

    def _check(self, frame: Any, data: bytes | None) -> bool:
        """Check a frame's token, typename and place in the stream (see executor.core.framecheck).

        Returns:
            False for a frame taken already, delivered again with the same bytes.

        Raises:
            StreamCorrupt: naming the edge, for a frame without the stream's producer
                token, of another typename, a frame lost (a gap), a different frame under
                a seq taken already, or a frame after end-of-stream.
        """
        return admit(self._position, frame, data, self.where)

    def decode(self, items: Any) -> list[Any]:
        """Decode serialized items as the port's typename."""
        parse = self.message_class.FromString
        try:
            decoded = [parse(item) for item in items]
        except Exception as e:
            raise DecodeError(
                f"stream {self.edge}: an item does not decode as {self.typename} ({e})"
            ) from e
        self.items_received += len(decoded)
        return decoded

    def drain(self) -> None:
        """Read and discard the rest of the stream, so its producer never waits on us.

        Raises:
            ItemChanged: for checked frames, as :meth:`check_unchanged`.
        """
        while not self.ended:
            self.next_batch()
        self.check_unchanged()


def check_left(stream: InputStream, frames: list[StreamFrame]) -> None:
    """Check the frames that reached an input after its end-of-stream (the runtime's, at
    the job's end): the same frame delivered again is dropped, anything else panics.

    Raises:
        StreamCorrupt: naming the edge (a second end-of-stream, a frame after it, or one
            without the stream's producer token).
    """
    for frame in frames:
        if type(frame) is MessageFrame:
            admit(stream._position, frame, None, stream.where)
            continue
        assert isinstance(frame, bytes)
        check_size(frame, stream.where)
        parsed = decode_frame(frame, stream.edge)
        check_count(len(parsed.items), stream.where)
        admit(stream._position, parsed, frame, stream.where)


def merge(inbox: FrameSource, streams: list[InputStream]) -> Iterator[tuple[str, Any]]:
    """Yield (port, item) from several input streams of one inbox as items arrive."""
    for stream in streams:
        if stream._consts is not None:
            for item in stream.next_batch():
                yield stream.port, item
    waiting = {s.port: s for s in streams if not s.ended}
    while waiting:
        port, data = inbox.take_any(waiting)
        stream = waiting[port]
        for item in stream.decode_frame(data):
            yield port, item
        if stream.ended:
            del waiting[port]
