"""The rules of a progdef's ``protos``, shared by the catalogue loader and the executor.

A progdef lists ``.proto`` files in ``protos``: files of its own folder, or files of its
catalogue's ``protos/`` folder (by their name there), which every progdef of the catalogue
may list: that is how progdefs share a type. A custom port type must be a message of the
files it lists (or of what they import); a type only another progdef's files define is
refused, with how to share it. An executor loads its progdef alone, with exactly these
rules, so what a catalogue accepts an executor of it accepts, and the other way round.

Two progdefs whose files of one name (or one message full name) differ cannot both be
loaded into one process: :func:`proto_clashes` finds every progdef involved, naming the
message and field that differ, so the catalogue leaves them all out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from executor.core.errors import ProgdefInvalid
from executor.core.protoc import COMPILED_FILE, SHARED_PROTOS_DIR, shared_protos_dir
from executor.core.registry import defined_by, types_of
from executor.core.strictjson import parse_strict

_HOW_TO_SHARE = (
    "to share a .proto between progdefs, move it into the catalogue's {folder}/ folder "
    '({path}) and list "{name}" in the "protos" of each'
)
# The files every executor has: they define no progdef's own types.
_BUILT_IN_FILES = ("dagyo/", "google/protobuf/")


def check_proto_paths(directory: Path, protos: Iterable[object], *, source: str) -> list[str]:
    """Problems with a ``protos`` list: each must be a ``.proto`` file of the progdef's folder
    or of the catalogue's ``protos/`` folder, and not of both.

    With a compiled :data:`COMPILED_FILE` beside progdef.json (an image, the scheduler's
    mounted catalogue) the sources need not be there.
    """
    problems = []
    root = directory.resolve()
    shared = shared_protos_dir(directory)
    compiled = (root / COMPILED_FILE).is_file()
    for entry in protos:
        if not isinstance(entry, str) or not entry.endswith(".proto"):
            problems.append(f"{source}: protos entry {entry!r} must be a .proto file name")
            continue
        path = (root / entry).resolve()
        if Path(entry).is_absolute() or not path.is_relative_to(root):
            name = Path(entry).name
            problems.append(
                f"{source}: protos entry {entry!r} is outside the progdef's folder: "
                + _HOW_TO_SHARE.format(folder=SHARED_PROTOS_DIR, path=shared / name, name=name)
            )
        elif path.is_file() and (shared / entry).is_file():
            problems.append(
                f"{source}: protos entry {entry!r} is both in {directory} and in "
                f"{shared}: keep one (the catalogue's, to share it)"
            )
        elif not compiled and not path.is_file() and not (shared / entry).is_file():
            problems.append(
                f"{source}: protos entry {entry!r}: no such file in {directory} nor in {shared}"
            )
    return problems


def foreign_type(port_type: str, directory: Path) -> str:
    """Why a port may not use ``port_type``, a custom message this process knows from
    another progdef's protos but that the progdef's own ``protos`` do not define ("" when
    no progdef brought it)."""
    found = defined_by(port_type)
    if found is None:
        return ""
    file, owner = found
    name = Path(file).name
    return (
        f'{port_type} is not defined by this progdef\'s "protos" (it is defined by {file} of '
        f"progdef {owner}): "
        + _HOW_TO_SHARE.format(
            folder=SHARED_PROTOS_DIR, path=shared_protos_dir(directory) / name, name=name
        )
    )


def proto_clashes(paths: Iterable[Path]) -> dict[str, list[str]]:
    """The progdefs whose protos define a file of one name, or a message of one full name,
    differently from another progdef's: progdef name -> problems (each naming the message
    and field that differ, and both files), for every progdef involved.

    Args:
        paths: the catalogue's progdef.json files. One that does not parse, or whose protos
            do not compile, is skipped: loading it reports that.
    """
    files: dict[str, list[tuple[str, str, descriptor_pb2.FileDescriptorProto]]] = {}
    for path in paths:
        progdef = _progdef_files(path)
        if progdef is None:
            continue
        name, directory, compiled = progdef
        for file in compiled:
            if not file.name.startswith(_BUILT_IN_FILES):
                where = _where(directory, file.name)
                files.setdefault(file.name, []).append((name, where, file))
    problems: dict[str, list[str]] = {}
    for file_name, holders in files.items():
        groups: dict[bytes, list[tuple[str, str, descriptor_pb2.FileDescriptorProto]]] = {}
        for holder in holders:
            groups.setdefault(_comparable(holder[2]), []).append(holder)
        if len(groups) < 2:
            continue
        # The definition most progdefs share first, then in name order.
        first, second = sorted(groups.values(), key=lambda group: -len(group))[:2]
        why = _difference(first[0][2], first[0][1], second[0][2], second[0][1]) or (
            f"{file_name}: {first[0][1]} and {second[0][1]} differ"
        )
        for name, _, _ in holders:
            problems.setdefault(name, []).append(
                f"{why}: one .proto file name, two definitions; make them one (a shared .proto "
                f"goes in the catalogue's {SHARED_PROTOS_DIR}/ folder), or give one another "
                "file name and package"
            )
    messages: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for file_name, holders in files.items():
        for name, where, file in holders:
            for message in _messages(file):
                messages.setdefault(message, {}).setdefault(file_name, []).append((name, where))
    for message, by_file in messages.items():
        if len(by_file) < 2:
            continue
        wheres = [places[0][1] for places in by_file.values()]
        for places in by_file.values():
            for name, _ in places:
                problems.setdefault(name, []).append(
                    f"{message} is defined in {' and in '.join(wheres)}: one message, one "
                    f"file (a shared .proto goes in the catalogue's {SHARED_PROTOS_DIR}/ "
                    "folder), or give one another package"
                )
    return problems


def _progdef_files(
    path: Path,
) -> tuple[str, Path, list[descriptor_pb2.FileDescriptorProto]] | None:
    """A progdef.json's name, folder and compiled protos; None when any of them fails."""
    try:
        data: Any = parse_strict(path.read_bytes(), source=str(path))
    except Exception:  # noqa: BLE001 - loading the progdef reports it
        return None
    if not isinstance(data, dict):
        return None
    name, protos = data.get("name"), data.get("protos", [])
    if not isinstance(name, str) or not isinstance(protos, list) or not protos:
        return None
    directory = path.parent
    if check_proto_paths(directory, protos, source=str(path)):
        return None
    try:
        compiled = types_of(directory, protos, source=str(path))
    except ProgdefInvalid:
        return None
    return name, directory, list(descriptor_pb2.FileDescriptorSet.FromString(compiled).file)


def _where(directory: Path, file_name: str) -> str:
    """A file as a reader finds it: ``progdef_folder/geo.proto`` or ``protos/geo.proto``."""
    if (
        not (directory / file_name).is_file()
        and (shared_protos_dir(directory) / file_name).is_file()
    ):
        return f"{SHARED_PROTOS_DIR}/{file_name}"
    return f"{directory.name}/{file_name}"


def _comparable(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    bare = descriptor_pb2.FileDescriptorProto()
    bare.CopyFrom(file)
    bare.ClearField("source_code_info")
    return bare.SerializeToString(deterministic=True)


def _messages(file: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """Every message of a file, nested ones too, by full name."""
    found: dict[str, Any] = {}

    def add(prefix: str, messages: Iterable[Any]) -> None:
        for message in messages:
            found[prefix + message.name] = message
            add(f"{prefix}{message.name}.", message.nested_type)

    add(f"{file.package}." if file.package else "", file.message_type)
    return found


def _difference(
    first: descriptor_pb2.FileDescriptorProto,
    first_where: str,
    second: descriptor_pb2.FileDescriptorProto,
    second_where: str,
) -> str:
    """The first message or field that differs between two definitions of one file, as
    ``acme.geo.Point.x: double in a/geo.proto, string in b/geo.proto``; "" when only
    something else (an option, an enum, the package) differs."""
    ones, others = _messages(first), _messages(second)
    for message in sorted(set(ones) | set(others)):
        if message not in others or message not in ones:
            where = first_where if message in ones else second_where
            return f"{message}: defined in {where} only"
        one, other = _fields(ones[message]), _fields(others[message])
        for field in [*one, *(f for f in other if f not in one)]:
            if one.get(field) != other.get(field):
                # Only the numbers differ: show them; else the types say it.
                numbered = field in one and field in other and one[field][0] == other[field][0]
                return (
                    f"{message}.{field}: {_shown(one.get(field), numbered)} in {first_where}, "
                    f"{_shown(other.get(field), numbered)} in {second_where}"
                )
    return ""


def _shown(field: tuple[str, int] | None, numbered: bool) -> str:
    if field is None:
        return "no such field"
    return f"{field[0]} = {field[1]}" if numbered else field[0]


def _fields(message: Any) -> Mapping[str, tuple[str, int]]:
    """Each field of a message: its ``[repeated ]type`` and its number."""
    kinds = descriptor_pb2.FieldDescriptorProto
    fields = {}
    for field in message.field:
        kind = field.type_name.lstrip(".") or kinds.Type.Name(field.type)[5:].lower()
        repeated = "repeated " if field.label == kinds.LABEL_REPEATED else ""
        fields[field.name] = (repeated + kind, field.number)
    return fields
