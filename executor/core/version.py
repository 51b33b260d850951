"""A progdef's version: a content hash of its progdef.json and its image build context.

The scheduler, the executor and the deploy tooling all name mailboxes and tag images with
it, so they must compute it the same way; this is the one place that does.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Any, Protocol

from executor.core.constants import ENV_PROGDEF_VERSION
from executor.core.protoc import SHARED_PROTOS_DIR, shared_protos_dir

VERSION_FILE = "VERSION"


class Hashable(Protocol):
    """What the version is computed from: a progdef as loaded (executor.core.progdef.Progdef)."""

    @property
    def directory(self) -> Path | None: ...

    @property
    def raw(self) -> Any: ...

    @property
    def context_dir(self) -> Path: ...

    @property
    def dockerfile(self) -> str: ...


def progdef_version(progdef: Hashable) -> str:
    """Return the progdef's version: a content hash of its progdef.json and build context.

    The hash covers the canonical JSON of progdef.json, then every file of the image build
    context in sorted path order (path and contents), skipping what ``.dockerignore`` at
    the context root excludes, then the Dockerfile if the context leaves it out, then the
    catalogue's shared .proto files when it lists one of them. Inside an
    image, where the context is gone, the version baked in at build time is used:
    ``DAGYO_PROGDEF_VERSION``, else a ``VERSION`` file next to progdef.json.
    """
    baked = os.environ.get(ENV_PROGDEF_VERSION, "")
    if baked:
        return baked
    if progdef.directory is not None and (progdef.directory / VERSION_FILE).is_file():
        return (progdef.directory / VERSION_FILE).read_text().strip()
    digest = hashlib.sha256()
    digest.update(json.dumps(progdef.raw, sort_keys=True, separators=(",", ":")).encode())
    if progdef.directory is not None:
        files = context_files(progdef.context_dir)
        # The Dockerfile shapes the image even where the context leaves it out (outside
        # the context, or .dockerignored: Docker sends it all the same).
        dockerfile = (progdef.directory / progdef.dockerfile).resolve()
        if dockerfile.is_file() and dockerfile not in {path.resolve() for _, path in files}:
            files.append(("\0dockerfile", dockerfile))
        files.extend(_shared_protos(progdef.directory, progdef.raw.get("protos")))
        for relative, path in files:
            digest.update(b"\0" + relative.encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _shared_protos(directory: Path, protos: Any) -> list[tuple[str, Path]]:
    """The .proto files of the catalogue's protos/ folder, when the progdef lists one of
    them: outside its build context, they shape its types all the same."""
    shared = shared_protos_dir(directory)
    entries = protos if isinstance(protos, list) else []
    listed = [
        entry
        for entry in entries
        if isinstance(entry, str)
        and not (directory / entry).is_file()
        and (shared / entry).is_file()
    ]
    if not listed:
        return []
    return [
        (f"\0{SHARED_PROTOS_DIR}/{path.relative_to(shared).as_posix()}", path)
        for path in sorted(shared.rglob("*.proto"))
    ]


def context_files(root: Path) -> list[tuple[str, Path]]:
    """Return (posix relative path, path) of every file in a build context, sorted.

    Honours ``.dockerignore`` at the root (patterns with ``*``, ``**``, and ``!``
    exceptions; the last matching pattern wins) and always skips ``__pycache__``.
    """
    patterns = _dockerignore(root)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in filenames:
            path = Path(dirpath) / filename
            relative = path.relative_to(root).as_posix()
            if not _ignored(relative, patterns):
                files.append((relative, path))
    return sorted(files)


def _dockerignore(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = (line[1:] if negate else line).strip()
        # Cleaned as Docker cleans it: "./build/", "/build" and "build" are one pattern.
        pattern = posixpath.normpath(pattern).lstrip("/") if pattern else ""
        if pattern and pattern != ".":
            patterns.append((negate, _glob_regex(pattern)))
    return patterns


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    # A pattern naming a folder excludes everything under it.
    return re.compile(f"^{out}(?:/.*)?$")


def _ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negate, regex in patterns:
        if regex.match(relative):
            ignored = not negate
    return ignored
