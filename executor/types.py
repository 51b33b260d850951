"""Typenames: from a protobuf full name to the message class that encodes it."""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from executor.errors import UnknownType

# Imported for their side effect: registering the standard stream types in the pool.
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
