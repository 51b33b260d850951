"""Export frames into JSON: how the scheduler reads a flow's results off the broker.

Each exported item is decoded as its export's typename and kept as the JSON form of
``google.protobuf.json_format`` (field names as in the .proto), up to a per-flow size cap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.message import DecodeError as ProtobufDecodeError

from executor import errorport
from executor.errors import DecodeError, StreamCorrupt, UnknownType
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import message_class
from scheduler.service.state import FlowRuntime


def decode_frame(body: bytes, *, export: str, source: str) -> Frame:
    """Parse one export frame.

    Raises:
        DecodeError: naming the export and the output it comes from.
    """
    try:
        return Frame.FromString(body)
    except ProtobufDecodeError as e:
        raise DecodeError(f"export {export} (from {source}): a frame does not parse: {e}") from e


def check_frame(
    frame: Frame, typename: str, next_seq: int, *, ended: bool, export: str, source: str
) -> None:
    """Check a frame's typename and its place in the export stream.

    A frame below the stream's position is let through (the caller skips it): the broker
    delivers a frame again when the scheduler's connection dropped before its ack, and the
    frame was kept already.

    Raises:
        StreamCorrupt: naming the export, for a frame of another typename, a frame lost (a
            gap in seq) or a new frame after end-of-stream.
    """
    where = f"export {export} (from {source})"
    if frame.typename != typename:
        raise StreamCorrupt(
            f"{where}: a frame of {frame.typename or 'no typename'} arrived on a stream "
            f"of {typename}"
        )
    if frame.seq < next_seq:
        return
    if ended:
        raise StreamCorrupt(f"{where}: frame {frame.seq} after end-of-stream")
    if frame.seq > next_seq:
        raise StreamCorrupt(
            f"{where}: frame {frame.seq} arrived where frame {next_seq} was due (a frame was lost)"
        )


def export_values(items: Sequence[bytes], typename: str, *, export: str, source: str) -> list[str]:
    """Each item of a frame as JSON text, e.g. ``{"text": "hello Ada"}``.

    Raises:
        DecodeError: when an item does not decode as ``typename``, naming the export.
    """
    try:
        cls = message_class(typename)
    except UnknownType as e:
        raise DecodeError(f"export {export} (from {source}): {e}") from e
    values = []
    for index, item in enumerate(items):
        try:
            message = cls.FromString(item)
        except ProtobufDecodeError as e:
            raise DecodeError(
                f"export {export} (from {source}): item {index} of a frame does not decode "
                f"as {typename}: {e}"
            ) from e
        value = errorport.to_dict(message)  # an Error's item as JSON, not base64
        values.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return values


def keep_exports(
    record: pb.FlowRecord,
    runtime: FlowRuntime,
    export: str,
    values: Sequence[str],
    *,
    cap_bytes: int,
) -> tuple[list[pb.Export], list[pb.Export]]:
    """Count a frame's exported values against the flow's cap.

    Past the cap nothing more is kept (the kept exports stay a prefix of what arrived)
    and ``record.exports_truncated`` is set; ``runtime``'s counts are updated.

    Returns:
        (every export of the frame, the ones to keep with the record).
    """
    every = [pb.Export(export=export, value_json=value) for value in values]
    kept = []
    for item in every:
        size = len(item.value_json.encode()) + len(export)
        within_items = not runtime.max_export_items or runtime.kept_count < runtime.max_export_items
        if not record.exports_truncated and within_items and runtime.kept_bytes + size <= cap_bytes:
            kept.append(item)
            runtime.kept_bytes += size
            runtime.kept_count += 1
        else:
            record.exports_truncated = True
            record.exports_dropped += 1
    return every, kept


def read_frame(
    record: pb.FlowRecord, runtime: FlowRuntime, export: str, body: bytes, *, cap_bytes: int
) -> tuple[list[pb.Export], list[pb.Export]] | None:
    """Read one frame of an export stream, moving the stream's position on.

    Returns:
        None for a frame read already (a seq below the stream's position: delivered again
        after a reconnection); else (every export of the frame, the ones to keep).

    Raises:
        DecodeError: when the frame or an item does not parse, naming the export.
    """
    stream = runtime.exports[export]
    frame = decode_frame(body, export=export, source=stream.source)
    check_frame(
        frame,
        stream.typename,
        stream.next_seq,
        ended=stream.ended,
        export=export,
        source=stream.source,
    )
    if frame.seq < stream.next_seq:
        return None
    values = export_values(frame.items, stream.typename, export=export, source=stream.source)
    exports = keep_exports(record, runtime, export, values, cap_bytes=cap_bytes)
    stream.next_seq = frame.seq + 1
    stream.ended = stream.ended or frame.end_of_stream
    return exports
