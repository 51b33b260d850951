"""Export frames into JSON: how the scheduler reads a flow's results off the broker.

Each exported item is decoded as its export's typename and kept as the JSON form of
``google.protobuf.json_format`` (field names as in the .proto), up to a per-flow size cap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from google.protobuf.message import DecodeError as ProtobufDecodeError

from executor import errorport
from executor.core.errors import (
    DecodeError,
    ObjectMissing,
    ObjectStoreUnavailable,
    StreamCorrupt,
    UnknownType,
)
from executor.core.framecheck import admit, check_count, check_size
from executor.core.objects import ObjectStore
from executor.core.offload import check_reference
from executor.core.types import message_class
from executor.pb.dagyo.v1.frame_pb2 import Frame, ObjectRef
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime
from scheduler.service.limits import export_bytes

# The one key of an offloaded exported item's value (no protobuf JSON name starts with @).
OFFLOADED = "@offloaded"


def decode_frame(body: bytes, *, export: str, source: str) -> Frame:
    """Parse one export frame, once it is within the bounds of a frame.

    Raises:
        DecodeError: naming the export and the output it comes from (StreamCorrupt for a
            frame past the bounds, refused unread).
    """
    where = f"export {export} (from {source})"
    check_size(body, where)
    try:
        frame = Frame.FromString(body)
    except ProtobufDecodeError as e:
        raise DecodeError(f"{where}: a frame does not parse: {e}") from e
    check_count(len(frame.items), where)
    return frame


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
    if runtime.max_export_bytes:  # what the flow's record has room for
        cap_bytes = min(cap_bytes, runtime.max_export_bytes)
    every = [pb.Export(export=export, value_json=value) for value in values]
    kept = []
    for item in every:
        size = export_bytes(export, item.value_json)
        within_items = not runtime.max_export_items or runtime.kept_count < runtime.max_export_items
        if not record.exports_truncated and within_items and runtime.kept_bytes + size <= cap_bytes:
            kept.append(item)
            runtime.kept_bytes += size
            runtime.kept_count += 1
        else:
            record.exports_truncated = True
            record.exports_dropped += 1
    return every, kept


def exported_key(flow_id: str, export: str, seq: int, index: int) -> str:
    """Where an offloaded exported item is kept with the flow's exports."""
    return f"exports/{flow_id}/{export}/{seq}.{index}"


def copy_offloaded(
    objects: ObjectStore | None, body: bytes, *, flow_id: str, export: str, source: str
) -> list[str]:
    """Keep the offloaded items of an export frame with the flow's exports; return their
    keys.

    Each object is copied (a link, or a server-side copy) from the flow's prefix, deleted at
    its end, to :func:`exported_key`, kept with the flow record. Done before the frame is
    read (:func:`read_frame`), off the broker's I/O thread (exportcopies.py).

    Raises:
        DecodeError: naming the export, for a frame that does not parse, a reference that
            does not check (StreamCorrupt), an object that is not there, or a store that
            cannot be written.
    """
    where = f"export {export} (from {source})"
    frame = decode_frame(body, export=export, source=source)
    copied = []
    for reference in frame.offloaded:
        store = check_reference(objects, reference, flow_id=flow_id, where=where)
        key = exported_key(flow_id, export, frame.seq, reference.index)
        try:
            store.copy(reference.key, key)
        except ObjectMissing as e:
            raise StreamCorrupt(f"{where}: the offloaded item {reference.key} is not there") from e
        except ObjectStoreUnavailable as e:
            raise StreamCorrupt(f"{where}: {e}") from e
        copied.append(key)
    return copied


def offloaded_value(
    objects: ObjectStore | None,
    reference: ObjectRef,
    *,
    typename: str,
    flow_id: str,
    export: str,
    seq: int,
    where: str,
) -> str:
    """The export value of an offloaded exported item (kept by :func:`copy_offloaded`):
    ``{"@offloaded": {"typename", "size", "sha256", "key"}}`` (docs/protocol.md, Offloaded
    items). A watcher gets that line, not the item.

    Raises:
        StreamCorrupt: naming ``where``, for a reference that does not check.
    """
    check_reference(objects, reference, flow_id=flow_id, where=where)
    key = exported_key(flow_id, export, seq, reference.index)
    value = {"typename": typename, "size": reference.size, "sha256": reference.sha256, "key": key}
    return json.dumps({OFFLOADED: value}, separators=(",", ":"))


def offloaded_key(value_json: str) -> str:
    """The key of the object a kept export value stands for, or "" for an inline one."""
    if not value_json.startswith('{"' + OFFLOADED):
        return ""
    key: str = json.loads(value_json)[OFFLOADED]["key"]
    return key


def read_frame(
    record: pb.FlowRecord,
    runtime: FlowRuntime,
    export: str,
    body: bytes,
    *,
    cap_bytes: int,
    objects: ObjectStore | None = None,
) -> tuple[list[pb.Export], list[pb.Export]] | None:
    """Read one frame of an export stream, moving the stream's position on.

    Args:
        objects: the object store offloaded items are in; they were kept already (see
            :func:`copy_offloaded`).

    Returns:
        None for a frame read already (a seq below the stream's position, with the bytes
        kept: delivered again after a reconnection); else (every export of the frame, the
        ones to keep).

    Raises:
        DecodeError: when the frame or an item does not parse, naming the export;
            StreamCorrupt for a frame past the bounds, without the stream's producer token,
            of another typename, out of sequence, a different frame under a seq kept, or
            after end-of-stream (executor.core.framecheck).
    """
    stream = runtime.exports[export]
    frame = decode_frame(body, export=export, source=stream.source)
    # Checked and decoded before the position moves: a frame that fails leaves it as it was.
    moved = replace(stream, recent=list(stream.recent))
    if not admit(moved, frame, body, f"export {export} (from {stream.source})"):
        return None
    values = export_values(frame.items, stream.typename, export=export, source=stream.source)
    for reference in frame.offloaded:
        where = f"export {export} (from {stream.source})"
        if reference.index >= len(values):
            raise StreamCorrupt(f"{where}: a frame refers to an offloaded item past its items")
        values[reference.index] = offloaded_value(
            objects,
            reference,
            typename=stream.typename,
            flow_id=record.id,
            export=export,
            seq=frame.seq,
            where=where,
        )
    exports = keep_exports(record, runtime, export, values, cap_bytes=cap_bytes)
    stream.next_seq, stream.ended, stream.recent = moved.next_seq, moved.ended, moved.recent
    return exports
