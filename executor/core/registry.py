"""Custom stream types: a progdef's ``protos`` compiled and added to the process's registry.

A progdef lists ``.proto`` files (in its folder, or in its catalogue's ``protos/`` folder)
in ``protos``; :mod:`executor.core.protoc` compiles them into a ``FileDescriptorSet`` (with the
doc comments), which is
added to protobuf's default descriptor pool, so :func:`executor.core.types.message_class` finds
their messages like the built-in ones.

An image needs no protobuf compiler at run time: ``dagyo build`` puts the compiled set
next to progdef.json in the image as :data:`COMPILED_FILE` (the author's folder is left as
it is), and a progdef folder without one is compiled here (which needs ``grpcio-tools``, a
dependency of dagyo's scheduler side and CLI; the executor base image has none). A folder
that holds a compiled set is read from it, not from its .proto files.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

from executor.core.errors import ProgdefInvalid
from executor.core.protoc import BUILTIN_PROTO_DIR, COMPILED_FILE, compile_protos, compiled_types

__all__ = ["COMPILED_FILE", "compile_protos", "compiled_types"]  # re-exported for callers
_lock = threading.Lock()
# file name -> (the FileDescriptorProto as added, the progdef that brought it first)
_added: dict[str, tuple[descriptor_pb2.FileDescriptorProto, str]] = {}
# file name -> every progdef that brought it, in load order
_owners: dict[str, list[str]] = {}


@dataclass(frozen=True)
class TypeDoc:
    """The documentation of one message: its comment and each field's.

    Attributes:
        typename: the message's full name.
        source: the ``.proto`` file and the progdef that defines it (``built in`` for
            dagyo.types, ``well-known`` for google.protobuf).
        doc: the comment above the message.
        fields: (name, type, comment) per field, in order.
    """

    typename: str
    source: str
    doc: str
    fields: tuple[tuple[str, str, str], ...]


def load_types(directory: Path, protos: Sequence[str], *, source: str, progdef: str) -> set[str]:
    """Compile (or read the compiled set of) a progdef's protos and register them.

    Returns:
        The full names of every message (nested ones too) of its files and their imports:
        the custom types its ports may use.

    Raises:
        ProgdefInvalid: a file that does not compile, or a message defined differently
            by another progdef already registered (naming both files).
    """
    if not protos:
        return set()
    data = types_of(directory, protos, source=source)
    register(data, source=source, progdef=progdef, own=protos)
    return message_names(data)


def types_of(directory: Path, protos: Sequence[str], *, source: str) -> bytes:
    """A progdef's serialized FileDescriptorSet: its compiled :data:`COMPILED_FILE` when
    its folder has one, else its protos compiled.

    Raises:
        ProgdefInvalid: see :func:`compile_protos`.
    """
    compiled = directory / COMPILED_FILE
    if compiled.is_file():
        return compiled.read_bytes()
    return compiled_types(directory, protos, source=source)


def message_names(data: bytes) -> set[str]:
    """The full name of every message, nested ones too, of a serialized FileDescriptorSet."""
    names: set[str] = set()

    def add(prefix: str, messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            names.add(prefix + message.name)
            add(f"{prefix}{message.name}.", message.nested_type)

    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        add(f"{file.package}." if file.package else "", file.message_type)
    return names


def defined_by(typename: str) -> tuple[str, str] | None:
    """The .proto file defining a custom message this process registered, and the first
    progdef that brought it; None for another name."""
    try:
        file = descriptor_pool.Default().FindMessageTypeByName(typename).file.name
    except KeyError:
        return None
    return (file, _added[file][1]) if file in _added else None


def register(data: bytes, *, source: str, progdef: str, own: Sequence[str] = ()) -> list[str]:
    """Add a serialized FileDescriptorSet to the default pool (files already there skipped).

    Raises:
        ProgdefInvalid: when a file or message clashes with a different definition.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    pool = descriptor_pool.Default()
    defined: list[str] = []
    with _lock:
        for file in files:
            if file.name in _added:
                earlier, owner = _added[file.name]
                if _comparable(earlier) != _comparable(file) and owner == progdef:
                    raise ProgdefInvalid(
                        [
                            f"{source}: {file.name} changed since this process loaded it, "
                            "and a loaded message cannot change: restart the process (the "
                            "scheduler, dagyo up) to load the new definition"
                        ]
                    )
                if _comparable(earlier) != _comparable(file):
                    raise ProgdefInvalid(
                        [
                            f"{source}: {file.name} defines its messages differently from "
                            f"the {file.name} of progdef {owner}, and one catalogue holds one "
                            "file of a name: give one of them another file name (and its "
                            "messages another package)"
                        ]
                    )
            else:
                try:
                    existing = pool.FindFileByName(file.name)
                except KeyError:
                    existing = None
                if existing is None:
                    try:
                        pool.Add(file)
                    except (TypeError, ValueError) as e:
                        raise ProgdefInvalid(
                            [f"{source}: {file.name}: {_clash(e, progdef)}"]
                        ) from None
                _added[file.name] = (file, progdef)
            owners = _owners.setdefault(file.name, [])
            if progdef not in owners:
                owners.append(progdef)
            if file.name in own:
                prefix = f"{file.package}." if file.package else ""
                defined.extend(prefix + m.name for m in file.message_type)
    return defined


def known_file(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The file ``name`` as this process knows it (in the default pool), or None."""
    try:
        file = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    with _lock:
        return _file_proto(file)


def same_definitions(
    one: descriptor_pb2.FileDescriptorProto, other: descriptor_pb2.FileDescriptorProto
) -> bool:
    """True when two forms of a file define the same things (comments aside)."""
    return _comparable(one) == _comparable(other)


def _comparable(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    bare = descriptor_pb2.FileDescriptorProto()
    bare.CopyFrom(file)
    bare.ClearField("source_code_info")
    return bare.SerializeToString(deterministic=True)


def _clash(error: Exception, progdef: str) -> str:
    text = str(error)
    owners = ", ".join(f"{name} (progdef {owner})" for name, (_, owner) in _added.items())
    return (
        f"{text.splitlines()[0] if text else 'a message clashes'}: a message of the same full "
        f"name is already defined{' by ' + owners if owners else ''}; give the package a "
        "name of its own"
    )


def known_typenames() -> list[str]:
    """Every message name a port may use: built-ins, well-known types, custom ones added."""
    from executor.pb.dagyo import types_pb2

    names = [f"dagyo.types.{name}" for name in types_pb2.DESCRIPTOR.message_types_by_name]
    names += [f"google.protobuf.{name}" for name in _WELL_KNOWN]
    for file, _ in _added.values():
        prefix = f"{file.package}." if file.package else ""
        names += [prefix + m.name for m in file.message_type]
    return names


_WELL_KNOWN = (
    "Timestamp",
    "Duration",
    "Struct",
    "Value",
    "ListValue",
    "Any",
    "Empty",
    "StringValue",
    "Int64Value",
    "DoubleValue",
    "BoolValue",
    "BytesValue",
)


def type_doc(typename: str, *, progdefs: Collection[str] | None = None) -> TypeDoc | None:
    """The documentation of a message: custom (from its progdef's .proto) or built in.

    Args:
        progdefs: the progdefs its source may name (those a caller may see); by default
            any. A file only progdefs outside them brought is named without a progdef.
    """
    for name, (file, _) in list(_added.items()):
        owners = [o for o in _owners.get(name, []) if progdefs is None or o in progdefs]
        if name.startswith(_WELL_KNOWN_FILES):  # a progdef's .proto imported it
            source = f"{name} (well-known)"
        else:
            source = f"{name} (progdef {owners[0]})" if owners else name
        doc = _doc_in(file, typename, source)
        if doc is not None:
            return doc
    if typename.startswith("dagyo.types."):
        for file in _builtin_files():
            doc = _doc_in(file, typename, "dagyo/types.proto (built in)")
            if doc is not None:
                return doc
    return None


def descriptor_set(
    typenames: Iterable[str], *, for_job: bool = False
) -> descriptor_pb2.FileDescriptorSet:
    """The files defining ``typenames``, each after the files it imports, with their doc
    comments where the registry has them: what ``protoc --include_imports`` writes.

    Args:
        for_job: leave out what every executor has (``dagyo/types.proto`` and the
            well-known types) and the comments, for a job descriptor.

    Raises:
        KeyError: for a typename no loaded .proto defines.
    """
    pool = descriptor_pool.Default()
    answer = descriptor_pb2.FileDescriptorSet()
    done: set[str] = set()

    def add(file: Any) -> None:
        if file.name in done or (for_job and file.name.startswith(_EVERY_EXECUTORS)):
            return
        done.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = _file_proto(file)
        if for_job:
            proto = descriptor_pb2.FileDescriptorProto.FromString(proto.SerializeToString())
            proto.ClearField("source_code_info")
        answer.file.append(proto)

    for typename in typenames:
        add(pool.FindMessageTypeByName(typename).file)
    return answer


# The files of the types every executor has: built in, and the well-known ones.
_WELL_KNOWN_FILES = "google/protobuf/"
_EVERY_EXECUTORS = ("dagyo/", _WELL_KNOWN_FILES)


def _file_proto(file: Any) -> descriptor_pb2.FileDescriptorProto:
    """A file of the pool as a FileDescriptorProto, with its comments when known."""
    if file.name in _added:
        return _added[file.name][0]
    for builtin in _builtin_files() if file.name == "dagyo/types.proto" else []:
        return builtin
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto


_builtin: list[descriptor_pb2.FileDescriptorProto] = []


def _builtin_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """dagyo/types.proto with its comments (compiled once; none without a compiler)."""
    if not _builtin:
        try:
            data = compile_protos(BUILTIN_PROTO_DIR, ["dagyo/types.proto"], source="dagyo")
        except ProgdefInvalid:
            return []
        files = descriptor_pb2.FileDescriptorSet.FromString(data).file
        _builtin.extend(f for f in files if f.name == "dagyo/types.proto")
    return _builtin


def _doc_in(file: descriptor_pb2.FileDescriptorProto, typename: str, source: str) -> TypeDoc | None:
    prefix = f"{file.package}." if file.package else ""
    for index, message in enumerate(file.message_type):
        if prefix + message.name != typename:
            continue
        comments = {
            tuple(loc.path): _paragraphs(loc.leading_comments)
            for loc in file.source_code_info.location
        }
        kinds = descriptor_pb2.FieldDescriptorProto
        fields = tuple(
            (
                field.name,
                field.type_name.lstrip(".")
                or kinds.Type.Name(field.type).removeprefix("TYPE_").lower(),
                comments.get((4, index, 2, number), ""),
            )
            for number, field in enumerate(message.field)
        )
        return TypeDoc(
            typename=typename, source=source, doc=comments.get((4, index), ""), fields=fields
        )
    return None


def _paragraphs(comment: str) -> str:
    """A doc comment with its lines joined, its paragraphs kept apart by a blank line."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", comment))
    return "\n\n".join(p for p in paragraphs if p)
