"""Typenames: from a protobuf full name to the message class that encodes it."""

from __future__ import annotations

from functools import cache
from typing import Any

# Imported for their side effect: registering the standard stream types and the
# well-known types a port may name in the pool.
from google.protobuf import (  # noqa: F401
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    message_factory,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import Message

from executor.core.errors import UnknownType
from executor.pb.dagyo import types_pb2

STANDARD_TYPES = tuple(f"dagyo.types.{name}" for name in types_pb2.DESCRIPTOR.message_types_by_name)


@cache
def message_class(typename: str) -> type[Message]:
    """Return the message class for a typename.

    Raises:
        UnknownType: when no loaded .proto defines the typename.
    """
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(typename)
    except KeyError:
        hint = f"; the standard types are {', '.join(STANDARD_TYPES)}"
        raise UnknownType(f"unknown typename {typename!r}{hint}") from None
    return message_factory.GetMessageClass(descriptor)


@cache
def frame_class(typename: str) -> type[Message]:
    """Return a message class that parses a whole ``dagyo.v1.Frame`` of ``typename`` items
    (see :func:`frame_class_of`).

    Raises:
        UnknownType: when no loaded .proto defines the typename.
    """
    return frame_class_of(message_class(typename))


def frame_class_of(item_class: type[Message]) -> type[Message]:
    """Return a message class that parses a whole ``dagyo.v1.Frame`` of ``typename`` items.

    ``Frame.items`` is ``repeated bytes`` (field 1); a ``repeated <typename>`` field 1 has
    the same encoding, so this class reads the same bytes and decodes every item in one C
    call instead of one ``FromString`` per item. The wire does not change.

    The class lives in the pool of ``item_class`` (the process's, or a job's own for the
    types it brought: see executor._runtime.jobtypes).
    """
    item = item_class.DESCRIPTOR
    typename = item.full_name
    name = "FrameOf_" + typename.replace(".", "_")
    pool: Any = item.file.pool
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"dagyo.internal.{name}"))
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(
        name=f"dagyo/internal/{name}.proto",
        package="dagyo.internal",
        syntax="proto3",
        dependency=[item.file.name],
    )
    message = file.message_type.add(name=name)
    repeated, optional = (
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    kinds = descriptor_pb2.FieldDescriptorProto
    message.field.add(
        name="items", number=1, label=repeated, type=kinds.TYPE_MESSAGE, type_name=f".{typename}"
    )
    message.field.add(name="end_of_stream", number=2, label=optional, type=kinds.TYPE_BOOL)
    message.field.add(name="seq", number=3, label=optional, type=kinds.TYPE_UINT64)
    message.field.add(name="typename", number=4, label=optional, type=kinds.TYPE_STRING)
    message.field.add(name="token", number=5, label=optional, type=kinds.TYPE_STRING)
    # ObjectRefs, kept serialized: this pool need not know dagyo.v1 (see executor.core.offload).
    message.field.add(name="offloaded", number=6, label=repeated, type=kinds.TYPE_BYTES)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"dagyo.internal.{name}"))


def describe(typename: str) -> str:
    """Return ``field: type, …`` for a typename, for `dagyo types`."""
    descriptor = message_class(typename).DESCRIPTOR
    fields = []
    for field in descriptor.fields:
        kind = (
            field.message_type.full_name
            if field.message_type
            else _SCALARS.get(field.type, str(field.type))
        )
        fields.append(f"{field.name}: {kind}")
    return ", ".join(fields)


_SCALARS = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
}

# The standard stream types, for progdef code: ``from executor.types import Text``.
Text = types_pb2.Text
Bytes = types_pb2.Bytes
Int64 = types_pb2.Int64
Float64 = types_pb2.Float64
TextPair = types_pb2.TextPair
Json = types_pb2.Json
Error = types_pb2.Error


def unknown_typename(port_type: str) -> str:
    """Why a typename names no known message ("" when it names one).

    The message names the typename, a did-you-mean over the known types, and the fix.
    """
    try:
        message_class(port_type)
    except UnknownType:
        pass
    else:
        return ""
    from difflib import get_close_matches

    from executor.core.registry import known_typenames

    known = known_typenames()
    # A short name ("Text") means the full name ending in it ("dagyo.types.Text").
    short = port_type.rsplit(".", 1)[-1].lower()
    ending = [name for name in known if name.rsplit(".", 1)[-1].lower() == short]
    close = ending or get_close_matches(port_type, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"no message named {port_type!r}{hint}: use a dagyo.types name, a well-known type "
        "such as google.protobuf.Timestamp, or define it in a .proto listed in protos"
    )
