"""The scheduler's catalogue: loaded once and again on change, and the Catalogue call's answer.

:class:`CatalogueCache` is the one loader of the scheduler: Submit, Catalogue, Invoke, the
version watch, the scaler, triggers and the dashboard all call it.

The Catalogue call's caller's view comes in already cut to its tenant
(``visible_catalogue``): the answer names no progdef outside it, no type only such a
progdef uses, and no file only such a progdef brought. ``dagyo progdefs --remote`` and
``dagyo types --remote`` print from it exactly what they print from a catalogue folder.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from executor.core.progdef import (
    Catalogue,
    Folders,
    Progdef,
    catalogue_folders,
    load_catalogue,
)
from executor.core.registry import descriptor_set
from scheduler.flow.typedocs import catalogue_typenames, describe_type, json_schema
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

# A file as last seen: its path, modification time and size.
_Stamp = tuple[tuple[str, int, int], ...]


class CatalogueCache:
    """The catalogue of a folder, loaded on the first call and again once a file changed.

    Every file a progdef's load reads or its version hashes counts: progdef.json,
    ``VERSION``, ``AUTOSCALER``, its protos, and every file of its build context (skipping
    ``__pycache__``). A file changed when it appeared, went, or its modification time or
    size differs; a call costs a ``stat`` of each, not a load. A catalogue that does not
    load is not kept: each call tries again, so a fixed file is picked up at once.

    Args:
        folders: the catalogue folder, or its folders (``DAGYO_PROGDEFS``).
    """

    def __init__(self, folders: Folders) -> None:
        self.folders = catalogue_folders(folders)
        self._lock = threading.Lock()
        self._catalogue: Catalogue | None = None
        self._roots: tuple[Path, ...] = self.folders
        self._stamp: _Stamp = ()

    def __call__(self) -> Catalogue:
        """Return the catalogue as the files are now.

        Raises:
            ProgdefInvalid: listing the problems of every malformed progdef.json.
        """
        with self._lock:
            stamp = _stamp(self._roots)
            if self._catalogue is None or stamp != self._stamp:
                catalogue = load_catalogue(self.folders)
                roots = _roots(self.folders, catalogue)
                if roots != self._roots:
                    self._roots, stamp = roots, _stamp(roots)
                self._catalogue, self._stamp = catalogue, stamp
            return self._catalogue


def _roots(folders: tuple[Path, ...], catalogue: Catalogue) -> tuple[Path, ...]:
    """The catalogue's folders and each build context outside them."""
    inside = [folder.resolve() for folder in folders]
    outside = {
        progdef.context_dir.resolve()
        for progdef in catalogue.values()
        if not any(progdef.context_dir.resolve().is_relative_to(f) for f in inside)
    }
    return (*folders, *sorted(outside))


def _stamp(roots: tuple[Path, ...]) -> _Stamp:
    seen = []
    for root in roots:
        # Links followed: a progdef folder may be a link (a ConfigMap volume's are).
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                try:
                    status = os.stat(path)
                except OSError:  # gone between the listing and the stat: a change
                    continue
                seen.append((path, status.st_mtime_ns, status.st_size))
    return tuple(seen)


def catalogue_answer(catalogue: Catalogue) -> pb.CatalogueResponse:
    """The CatalogueResponse of a caller's view of the catalogue."""
    typenames = catalogue_typenames(catalogue)
    types = []
    for typename in typenames:
        info = describe_type(typename, catalogue)
        types.append(
            pb.CatalogueType(
                typename=typename,
                source=info["source"],
                doc=info["doc"],
                fields=[pb.TypeField(**field) for field in info["fields"]],
                used_by=info["used_by"],
                json_schema=json.dumps(json_schema(typename)),
            )
        )
    return pb.CatalogueResponse(
        progdefs=[_progdef(progdef) for progdef in catalogue.values()],
        types=types,
        descriptor_set=descriptor_set(typenames),
        left_out=[
            pb.LeftOutProgdef(progdef=left.name, problems=left.problems)
            for left in catalogue.left_out.values()
        ],
    )


def _progdef(progdef: Progdef) -> pb.CatalogueProgdef:
    return pb.CatalogueProgdef(
        name=progdef.name,
        description=progdef.description,
        version=progdef.version,
        inputs=[pb.Port(name=name, type=type_) for name, type_ in progdef.inputs.items()],
        outputs=[pb.Port(name=name, type=type_) for name, type_ in progdef.outputs.items()],
        style=progdef.style,
        errors=progdef.errors,
    )
