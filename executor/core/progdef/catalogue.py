"""A catalogue: the progdefs of a folder, keyed by name, and those left out of it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from executor.core.errors import JsonProblems, ProgdefInvalid, ProgdefNotFound, ProtosInvalid
from executor.core.progdef.model import Progdef, did_you_mean
from executor.core.progdef.parse import load_progdef
from executor.core.progdef.protos import proto_clashes
from executor.core.strictjson import parse_strict


@dataclass(frozen=True)
class LeftOut:
    """A progdef left out of its catalogue because its protos do not load.

    Attributes:
        name: the progdef's name.
        problems: what is wrong, one a line, each naming its progdef.json and .proto file.
        tenants: the progdef's ``tenants`` (None for every tenant).
    """

    name: str
    problems: tuple[str, ...]
    tenants: tuple[str, ...] | None = None

    def lines(self) -> list[str]:
        """One line per problem, naming the progdef, the file and the fix."""
        return [
            f"progdef {self.name} is left out of the catalogue: {problem}; fix its .proto "
            'files, or take them out of "protos"'
            for problem in self.problems
        ]


class Catalogue(dict[str, Progdef]):
    """Progdef name -> progdef, as loaded, and the progdefs left out of it.

    Attributes:
        left_out: name -> :class:`LeftOut`, for each progdef whose protos do not load: a
            flow naming one is told so, and ``dagyo progdefs`` says why.
        folders: the folders it was loaded from, in order (none for one made in code).
    """

    def __init__(
        self,
        progdefs: Mapping[str, Progdef] | None = None,
        *,
        left_out: Mapping[str, LeftOut] | None = None,
        folders: Sequence[Path] = (),
    ) -> None:
        super().__init__(progdefs or {})
        self.left_out: dict[str, LeftOut] = dict(left_out or {})
        self.folders: tuple[Path, ...] = tuple(folders)


#: One catalogue folder, or several (``--progdefs`` repeated, ``DAGYO_PROGDEFS`` joined by
#: ``os.pathsep``).
Folders = Path | str | Sequence[Path | str]


def catalogue_folders(folders: Folders) -> tuple[Path, ...]:
    """The folders of a catalogue, as paths: one, or each of several."""
    if isinstance(folders, (str, Path)):
        return (Path(folders),)
    return tuple(Path(folder) for folder in folders)


def sample_catalogue() -> Path:
    """The sample catalogue installed with dagyo (the ``progdefs`` package's folder)."""
    import progdefs

    return Path(progdefs.__file__).parent


def load_catalogue(folders: Folders) -> Catalogue:
    """Load every ``*/progdef.json`` under the catalogue's folders, keyed by progdef name.

    Several folders make one catalogue: one registry of types, one name space (each folder
    with its own shared ``protos/`` folder).

    A progdef whose protos do not load (see :class:`ProtosInvalid`) is left out, with its
    problems in ``left_out``; the others still load.

    Raises:
        ProgdefInvalid: listing the problems of every malformed progdef.json, and any two
            progdefs that share a name (naming both folders).
    """
    directories = catalogue_folders(folders)
    missing = [directory for directory in directories if not directory.is_dir()]
    if missing or not directories:
        raise ProgdefInvalid(
            [
                f"{directory or 'no folder given'}: no such catalogue folder (set --progdefs "
                "or DAGYO_PROGDEFS to a folder of progdef folders; several are joined by "
                f"{os.pathsep!r} or given as --progdefs again)"
                for directory in [str(m) for m in missing] or [""]
            ]
        )
    catalogue = Catalogue(folders=directories)
    problems: list[str] = []
    failed: dict[Path, list[str]] = {}
    paths = [path for folder in directories for path in sorted(folder.glob("*/progdef.json"))]
    # Left out before any is loaded: a file loaded into this process cannot be taken back.
    clashes = proto_clashes(paths)
    for path in paths:
        clash = _clash(path, clashes)
        if clash is not None:
            catalogue.left_out[clash.name] = clash
            continue
        try:
            progdef = load_progdef(path)
        except ProtosInvalid as e:
            catalogue.left_out[e.progdef] = LeftOut(e.progdef, tuple(e.problems), e.tenants)
            continue
        except ProgdefInvalid as e:
            failed[path] = e.problems
            continue
        if progdef.name in catalogue:
            problems.append(
                f"{path}: progdef name {progdef.name!r} is already used by "
                f"{catalogue[progdef.name].directory}: give one of them another name"
                + (", or leave one folder out of --progdefs" if len(directories) > 1 else "")
            )
            continue
        catalogue[progdef.name] = progdef
    for path, first in failed.items():
        # Again, once every other progdef's types are loaded: a port type only another
        # progdef defines is then named with that progdef and how to share it.
        try:
            load_progdef(path)
        except ProgdefInvalid as e:
            problems.extend(e.problems)
        else:
            problems.extend(first)
    if problems:
        raise ProgdefInvalid(problems)
    return catalogue


def _clash(path: Path, clashes: Mapping[str, list[str]]) -> LeftOut | None:
    """The progdef of ``path`` left out for its clashing protos, if it is among them."""
    if not clashes:
        return None
    try:
        data = parse_strict(path.read_bytes(), source=str(path))
    except (OSError, JsonProblems):  # loading it reports that
        return None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or name not in clashes:
        return None
    tenants = data.get("tenants")
    listed = tuple(tenants) if isinstance(tenants, list) else None
    return LeftOut(name, tuple(clashes[name]), listed)


def find_progdef(catalogue: Mapping[str, Progdef], name: str) -> Progdef:
    """Return the named progdef.

    Raises:
        ProgdefNotFound: with a did-you-mean when a name is close.
    """
    try:
        return catalogue[name]
    except KeyError:
        raise ProgdefNotFound(
            f"no progdef named {name!r} in the catalogue{did_you_mean(name, catalogue)}"
        ) from None
