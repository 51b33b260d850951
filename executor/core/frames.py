"""What a stream carries: frames of items, as bytes across processes, as messages within one.

Across processes (a cluster) a frame is a serialized ``dagyo.v1.Frame``. Within one process
(the embedded runner, on the memory transport) it is a :class:`MessageFrame` holding the sent
messages themselves, with the same bounds, order and end-of-stream: an in-process edge then
costs no serialize and no parse per item. Its sender and every job that receives it share
each item, hence the rule (as in Beam and Ray): **an item must not be changed once it was
sent**, neither by the job that sent it nor by one that received it.

``FrameForm.CHECKED`` (``DAGYO_EMBEDDED_SERIALIZE=1``) is for progdef authors' tests: every
frame is serialized as a cluster sends it, receivers read copies parsed from its bytes, and
the frame also carries the messages that were sent, so the receiving job can check that
each still holds what was sent (see :func:`first_changed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message

from executor.core.errors import DecodeError
from executor.pb.dagyo.v1.frame_pb2 import Frame


class FrameForm(StrEnum):
    """What the frames a job sends are made of."""

    BYTES = "bytes"  # serialized dagyo.v1.Frame: across processes (a cluster executor)
    MESSAGES = "messages"  # the messages sent: within one process (the embedded runner)
    CHECKED = "checked"  # both, and receivers check the messages (DAGYO_EMBEDDED_SERIALIZE=1)


class MessageFrame:
    """A frame within one process: the messages sent, in order, with the frame's place.

    Attributes:
        items: the messages, shared with the sender: never changed once sent.
        end_of_stream, seq, typename: as in ``dagyo.v1.Frame``.
        data: for ``FrameForm.CHECKED``, the frame serialized as a cluster sends it;
            receivers read their items from it. Empty otherwise.
    """

    __slots__ = ("items", "end_of_stream", "seq", "typename", "data")

    def __init__(
        self,
        items: list[Any],
        *,
        end_of_stream: bool,
        seq: int,
        typename: str,
        data: bytes = b"",
    ) -> None:
        self.items = items
        self.end_of_stream = end_of_stream
        self.seq = seq
        self.typename = typename
        self.data = data


# A frame as a transport moves it: the memory transport carries either, RabbitMQ bytes only.
StreamFrame = bytes | MessageFrame


def first_changed(messages: Sequence[Message], sent: Sequence[bytes]) -> int:
    """Return the index of the first message that no longer holds what was sent, or -1.

    Args:
        messages: the messages, as they are now.
        sent: each one's bytes as it was sent.
    """
    for index, (message, data) in enumerate(zip(messages, sent, strict=True)):
        if message.SerializeToString() != data and not _same(message, data):
            return index
    return -1


def _same(message: Message, data: bytes) -> bool:
    # Different bytes can still be the same message (map entries in another order).
    again = type(message).FromString(data)
    return message.SerializeToString(deterministic=True) == again.SerializeToString(
        deterministic=True
    )


def decode_frame(frame: bytes, edge: str) -> Frame:
    """Parse a serialized frame.

    Raises:
        DecodeError: naming the edge, when the bytes are not a dagyo.v1.Frame.
    """
    try:
        return Frame.FromString(frame)
    except Exception as e:  # protobuf raises DecodeError or RuntimeWarning-ish errors
        raise DecodeError(f"stream {edge}: received a malformed frame ({e})") from e
