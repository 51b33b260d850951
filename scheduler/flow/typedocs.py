"""The types of a catalogue, documented: fields, doc comments, and the JSON Schema of each
message's JSON form (what consts and exports are written in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from executor.core.errors import UnknownType
from executor.core.progdef import Progdef, is_type_variable
from executor.core.registry import type_doc
from executor.core.types import STANDARD_TYPES, message_class

# The JSON form of the well-known types protobuf gives its own (json_format).
_WELL_KNOWN_SCHEMAS: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
    "google.protobuf.Any": {"type": "object", "required": ["@type"]},
}
_INTEGERS_AS_STRINGS = (
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
)
_NUMBERS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_BYTES = FieldDescriptor.TYPE_BYTES


def catalogue_typenames(catalogue: Mapping[str, Progdef]) -> list[str]:
    """Every message a catalogue uses: the built-ins, then its ports' types, sorted."""
    used = {
        typename
        for progdef in catalogue.values()
        for typename in (*progdef.inputs.values(), *progdef.outputs.values())
        if not is_type_variable(typename)
    }
    return [*STANDARD_TYPES, *sorted(used - set(STANDARD_TYPES))]


def describe_type(typename: str, catalogue: Mapping[str, Progdef]) -> dict[str, Any]:
    """One type: where it comes from, its doc comment, its fields and the progdefs using it.

    Raises:
        UnknownType: when no loaded .proto defines it.
    """
    descriptor = message_class(typename).DESCRIPTOR
    doc = type_doc(typename, progdefs=catalogue.keys())
    comments = {name: comment for name, _, comment in doc.fields} if doc else {}
    source = doc.source if doc else ("well-known" if typename.startswith("google.") else "")
    return {
        "typename": typename,
        "source": source,
        "doc": doc.doc if doc else "",
        "fields": [
            {"name": f.name, "type": _field_type(f), "doc": comments.get(f.name, "")}
            for f in descriptor.fields
        ],
        "used_by": sorted(
            p.name
            for p in catalogue.values()
            if typename in (*p.inputs.values(), *p.outputs.values())
        ),
    }


def _field_type(field: Any) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields
        return f"map<{_field_type(key)}, {_field_type(value)}>"
    if field.message_type is not None:
        kind = field.message_type.full_name
    elif field.enum_type is not None:
        kind = field.enum_type.full_name
    else:
        kind = _SCALAR_NAMES.get(field.type, str(field.type))
    repeated = field.is_repeated
    return f"repeated {kind}" if repeated else kind


_SCALAR_NAMES = {
    getattr(FieldDescriptor, name): name.removeprefix("TYPE_").lower()
    for name in dir(FieldDescriptor)
    if name.startswith("TYPE_")
}


def json_schema(typename: str) -> dict[str, Any]:
    """A JSON Schema (2020-12) of the message's JSON form, as consts are written.

    Raises:
        UnknownType: when no loaded .proto defines it.
    """
    descriptor = message_class(typename).DESCRIPTOR
    definitions: dict[str, Any] = {}
    root = _message_schema(descriptor, definitions)
    doc = type_doc(typename)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": typename,
        **({"description": doc.doc} if doc and doc.doc else {}),
        **root,
        **({"$defs": definitions} if definitions else {}),
    }


def _message_schema(descriptor: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for field in descriptor.fields:
        properties[field.json_name] = _field_schema(field, definitions)
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _field_schema(field: FieldDescriptor, definitions: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, definitions)}
    single = _single(field, definitions)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: FieldDescriptor, definitions: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None:
        name = field.message_type.full_name
        if name in _WELL_KNOWN_SCHEMAS:
            return dict(_WELL_KNOWN_SCHEMAS[name])
        if name not in definitions:
            definitions[name] = {}  # a placeholder first: messages may refer to themselves
            definitions[name] = _message_schema(field.message_type, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if field.enum_type is not None:
        names = [value.name for value in field.enum_type.values]
        return {"enum": [*names, *(value.number for value in field.enum_type.values)]}
    if field.type in _INTEGERS_AS_STRINGS:
        return {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}
    if field.type in _NUMBERS:
        return {"type": ["number", "string"]}
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type == _BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if field.type == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    return {"type": "integer"}


__all__ = ["UnknownType", "catalogue_typenames", "describe_type", "json_schema"]
