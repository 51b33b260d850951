"""What a consumer checks of every frame it takes (docs/protocol.md, Streams).

Executors check their inputs and the scheduler its exports with this one code:

* **bounds**, before anything is decoded: a frame body of more than
  FRAME_RECEIVE_MAX_BYTES, or of more than FRAME_MAX_ITEMS items, is refused unread, so
  one hostile frame cannot hold a process for minutes nor fill its memory;
* **the producer token**: a stream given a token (the scheduler's, in the job descriptor)
  refuses a frame that does not carry it;
* **the typename**, and **the place in the stream**: seq 0, 1, 2, … with no gap, nothing
  after end-of-stream. A frame under a seq already taken is the same frame delivered
  again (a reconnection, a producer publishing it again after a broker alarm) when its
  bytes are those taken (same CRC-32 and size): it is dropped. Any other is corruption.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from executor.core.constants import (
    FRAME_MAX_BYTES,
    FRAME_MAX_ITEMS,
    FRAME_RECEIVE_MAX_BYTES,
    REPEAT_WINDOW_FRAMES,
)
from executor.core.errors import DecodeError, StreamCorrupt

# Frames up to this size are parsed before their items are counted: a parse of so few
# bytes is quick whatever they hold. Larger ones are counted by walking their fields.
_PARSE_FIRST_BYTES = 2 * FRAME_MAX_BYTES


class Position(Protocol):
    """Where a consumer is in one stream (the scheduler keeps it in its export records).

    Attributes:
        typename: the stream's typename.
        token: the producer token its frames must carry; empty: none is checked.
        next_seq: the seq of the next new frame.
        ended: True once end-of-stream was taken.
        recent: ``[seq, crc32, size]`` of the last frames taken, oldest first.
    """

    typename: str
    token: str
    next_seq: int
    ended: bool
    recent: list[list[int]]


@dataclass
class StreamPosition:
    """A :class:`Position` of an executor's input (in memory: a job lives in one process)."""

    typename: str
    token: str = ""
    next_seq: int = 0
    ended: bool = False
    recent: list[list[int]] = field(default_factory=list)


def check_size(data: bytes, where: str) -> None:
    """Refuse a frame past the bounds of docs/protocol.md before anything of it is decoded.

    Raises:
        StreamCorrupt: naming ``where`` (the edge or export), the size and the bound.
    """
    size = len(data)
    if size > FRAME_RECEIVE_MAX_BYTES:
        raise StreamCorrupt(
            f"{where}: a frame of {size} bytes is larger than the {FRAME_RECEIVE_MAX_BYTES} a "
            "frame may be (docs/protocol.md, Streams); it was refused unread"
        )
    if size > _PARSE_FIRST_BYTES:
        check_count(_count_items(data, FRAME_MAX_ITEMS, where), where)


def check_count(items: int, where: str) -> None:
    """Refuse a frame of more items than a producer may put in one.

    Raises:
        StreamCorrupt: naming ``where`` and the bound.
    """
    if items > FRAME_MAX_ITEMS:
        raise StreamCorrupt(
            f"{where}: a frame of more than {FRAME_MAX_ITEMS} items, the most a frame may "
            "hold (docs/protocol.md, Streams); it was refused unread"
        )


def admit(position: Position, frame: Any, data: bytes | None, where: str) -> bool:
    """Check a parsed frame against the stream's position; move the position on.

    Args:
        frame: the parsed frame (``token``, ``typename``, ``seq``, ``end_of_stream``).
        data: its bytes as received; None for a frame of messages within one process
            (nobody else can write such a stream: no token nor repeat is checked).

    Returns:
        True for a new frame, to take; False for a frame taken already, delivered again
        with the same bytes, to drop.

    Raises:
        StreamCorrupt: naming ``where``, for a frame without the stream's producer token,
            of another typename, past a gap, after end-of-stream, or a different frame
            under a seq already taken.
    """
    if data is not None and position.token and frame.token != position.token:
        raise StreamCorrupt(
            f"{where}: a frame without the producer token the scheduler gave this stream "
            "(written by someone other than its producer: a forgery, or another flow's "
            "job); it was refused"
        )
    if frame.typename != position.typename:
        raise StreamCorrupt(
            f"{where}: a frame of {frame.typename or 'no typename'} arrived on a stream of "
            f"{position.typename}"
        )
    seq = frame.seq
    if seq < position.next_seq:
        taken = next((entry for entry in position.recent if entry[0] == seq), None)
        if taken is not None and data is not None:
            if [seq, zlib.crc32(data), len(data)] == taken:
                return False
            raise StreamCorrupt(
                f"{where}: frame {seq} arrived again with other contents than the frame "
                f"{seq} taken already (a different frame under a seq already taken)"
            )
    if position.ended:
        raise StreamCorrupt(f"{where}: frame {seq} after end-of-stream")
    if seq != position.next_seq:
        what = "lost" if seq > position.next_seq else "repeated"
        raise StreamCorrupt(
            f"{where}: frame {seq} arrived where frame {position.next_seq} was due "
            f"(a frame was {what})"
        )
    if data is not None:
        position.recent.append([seq, zlib.crc32(data), len(data)])
        del position.recent[:-REPEAT_WINDOW_FRAMES]
    position.next_seq = seq + 1
    position.ended = bool(frame.end_of_stream)
    return True


def _count_items(data: bytes, limit: int, where: str) -> int:
    """The items (field 1) of a serialized frame, counting no further than ``limit + 1``.

    Walks the fields without decoding them, so a frame of millions of items costs at most
    ``limit`` steps.

    Raises:
        DecodeError: naming ``where``, when the bytes are not a protobuf message.
    """
    position, end, items = 0, len(data), 0
    while position < end and items <= limit:
        key, position = _varint(data, position, where)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(data, position, where)
        elif wire_type == 2:
            length, position = _varint(data, position, where)
            position += length
            items += key >> 3 == 1
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise DecodeError(f"{where}: received a malformed frame (wire type {wire_type})")
    if position > end:
        raise DecodeError(f"{where}: received a malformed frame (truncated)")
    return items


def _varint(data: bytes, position: int, where: str) -> tuple[int, int]:
    value, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise DecodeError(f"{where}: received a malformed frame (a varint runs past its end)")
