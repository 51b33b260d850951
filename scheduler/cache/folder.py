"""`dagyo run`'s cache of deterministic results: one folder per entry, bounded, LRU.

An entry is the complete output streams of one cacheable node, under its key
(:mod:`scheduler.flow.cache_key`): ``DIR/KEY/entry.json`` says what made it and, per output
port, its items, bytes and SHA-256; ``DIR/KEY/PORT.items`` holds the items, each a 4-byte
big-endian length and the item's bytes. An entry is written into ``DIR/.pending-*`` while
its flow runs and renamed into place only when the flow succeeded, so a failed or cancelled
flow leaves none. The stream's hash is checked before an entry is used: a truncated or
corrupted entry is removed and its node runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from executor.core.settings import env_number
from scheduler.constants import (
    CACHE_BYTES,
    CACHE_MAX_BYTES,
    ENV_CACHE_BYTES,
    ENV_CACHE_DIR,
    ENV_CACHE_MAX_BYTES,
)

ENTRY_FILE = "entry.json"
_LENGTH = struct.Struct(">I")
_PENDING = ".pending-"
# Items recorded per write to an entry's file.
_BUFFER_ITEMS = 1024
# A pending folder this old was left by a run that was killed: it is removed.
PENDING_LEFT_S = 24 * 3600.0
_logger = logging.getLogger("dagyo.cache")


@dataclass(frozen=True)
class CacheSettings:
    """Where `dagyo run`'s cache lives and how big it may grow.

    Attributes:
        directory: ``DAGYO_CACHE_DIR``, default ``$XDG_CACHE_HOME/dagyo/cache`` (or
            ``~/.cache/dagyo/cache``).
        max_bytes: ``DAGYO_CACHE_BYTES``: the whole cache; least recently used entries go.
        max_output_bytes: ``DAGYO_CACHE_MAX_BYTES``: an output past it is not cached.
    """

    directory: Path
    max_bytes: int = CACHE_BYTES
    max_output_bytes: int = CACHE_MAX_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CacheSettings:
        """Read the settings from the environment.

        Raises:
            DagyoError: naming the variable, when a size is not a whole number above 0.
        """
        env = os.environ if env is None else env
        directory = env.get(ENV_CACHE_DIR, "")
        if not directory:
            xdg = env.get("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
            directory = str(Path(xdg) / "dagyo" / "cache")
        return cls(
            directory=Path(directory),
            max_bytes=env_number(env, ENV_CACHE_BYTES, CACHE_BYTES, int, above=0),
            max_output_bytes=env_number(env, ENV_CACHE_MAX_BYTES, CACHE_MAX_BYTES, int, above=0),
        )


@dataclass(frozen=True)
class Output:
    """One cached output stream: its items, their bytes on disk, and the stream's hash."""

    items: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Entry:
    """One cached node result: what made it, and its output streams by port."""

    key: str
    progdef: str
    version: str
    node: str
    flow: str
    made: float
    last_used: float
    hits: int = 0
    outputs: Mapping[str, Output] = field(default_factory=dict)
    # Whose entry it is, in the scheduler's cache ("" in the folder, and when it runs open).
    tenant: str = ""

    @property
    def size(self) -> int:
        """Bytes the entry's streams take."""
        return sum(output.bytes for output in self.outputs.values())

    def to_json(self) -> dict[str, Any]:
        """The entry as ``dagyo cache list --json`` shows it."""
        return {**asdict(self), "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """Read an entry.json document.

        Raises:
            KeyError, TypeError, ValueError: when it is not one.
        """
        outputs = {port: Output(**spec) for port, spec in dict(data["outputs"]).items()}
        fields = {k: data[k] for k in ("key", "progdef", "version", "node", "flow")}
        return cls(
            **{k: str(v) for k, v in fields.items()},
            made=float(data["made"]),
            last_used=float(data["last_used"]),
            hits=int(data["hits"]),
            outputs=outputs,
            tenant=str(data.get("tenant", "")),
        )


class Pending:
    """An entry being recorded while its flow runs; :meth:`FolderCache.commit` puts it in
    place, :meth:`discard` throws it away."""

    def __init__(self, folder: Path, entry: Entry, *, max_output_bytes: int) -> None:
        self.folder = folder
        self.entry = entry
        self.max_output_bytes = max_output_bytes
        # Ports past the bound: not cached, so neither is the entry.
        self.too_big: set[str] = set()
        self._files: dict[str, BinaryIO] = {}
        self._hashes: dict[str, Any] = {}
        self._counts: dict[str, list[int]] = {}
        self._buffers: dict[str, list[bytes]] = {}
        folder.mkdir(parents=True)

    def open(self, port: str) -> None:
        """Start recording output ``port`` (a port never written is cached empty)."""
        self._files[port] = (self.folder / f"{port}.items").open("wb")
        self._hashes[port] = hashlib.sha256()
        self._counts[port] = [0, 0]
        self._buffers[port] = []

    def write(self, port: str, item: bytes) -> bool:
        """Record one item of ``port``; False once the port went past the bound."""
        if port in self.too_big:
            return False
        record = _LENGTH.pack(len(item)) + item
        count = self._counts[port]
        if count[1] + len(record) > self.max_output_bytes:
            self.too_big.add(port)
            return False
        buffer = self._buffers[port]
        buffer.append(record)
        count[0] += 1
        count[1] += len(record)
        if len(buffer) >= _BUFFER_ITEMS:
            self._flush(port)
        return True

    def _flush(self, port: str) -> None:
        # One write and one hash update per batch: per item, they cost more than the item.
        data = b"".join(self._buffers[port])
        self._buffers[port].clear()
        self._files[port].write(data)
        self._hashes[port].update(data)

    def finish(self) -> Entry:
        """Close the files and return the entry, its outputs filled in."""
        for port, file in self._files.items():
            self._flush(port)
            file.close()
        outputs = {
            port: Output(items=count[0], bytes=count[1], sha256=self._hashes[port].hexdigest())
            for port, count in self._counts.items()
        }
        return replace(self.entry, outputs=outputs)

    def discard(self) -> None:
        """Throw the recording away."""
        for file in self._files.values():
            file.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class FolderCache:
    """The cache folder of `dagyo run` (see the module's docstring)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.directory = settings.directory

    def begin(self, entry: Entry) -> Pending:
        """Start recording an entry in a pending folder of its own."""
        self.directory.mkdir(parents=True, exist_ok=True)
        folder = self.directory / f"{_PENDING}{uuid.uuid4().hex}"
        return Pending(folder, entry, max_output_bytes=self.settings.max_output_bytes)

    def commit(self, pending: Pending) -> Entry | None:
        """Put a finished recording in place (replacing an older entry of the key), then
        evict least recently used entries down to the bound. None when it is not kept."""
        entry = pending.finish()
        if pending.too_big or entry.size > self.settings.max_bytes:
            pending.discard()
            return None
        _write_json(pending.folder / ENTRY_FILE, entry.to_json())
        target = self.directory / entry.key
        old = self.directory / f"{_PENDING}{uuid.uuid4().hex}"
        with contextlib.suppress(FileNotFoundError):
            target.rename(old)
        try:
            pending.folder.rename(target)
        except OSError:  # another run committed the same key meanwhile: its entry is as good
            pending.discard()
        shutil.rmtree(old, ignore_errors=True)
        self._evict(keep=entry.key)
        return entry

    def lookup(self, key: str) -> Entry | None:
        """The entry of ``key`` when it is there and whole (its streams' hashes checked);
        a damaged one is removed. The entry's use is not counted (see :meth:`touch`)."""
        entry = self._read(self.directory / key)
        if entry is None:
            return None
        for port, output in entry.outputs.items():
            if _file_hash(self.directory / key / f"{port}.items") != (output.bytes, output.sha256):
                _logger.warning(
                    "cache entry %s (progdef %s, node %s): output %s is truncated or "
                    "corrupted (its hash differs): removed, the node runs",
                    key,
                    entry.progdef,
                    entry.node,
                    port,
                )
                shutil.rmtree(self.directory / key, ignore_errors=True)
                return None
        return entry

    def items(self, entry: Entry, port: str) -> Iterator[bytes]:
        """Yield the items of one cached output, in order."""
        with (self.directory / entry.key / f"{port}.items").open("rb") as file:
            while header := file.read(_LENGTH.size):
                (length,) = _LENGTH.unpack(header)
                yield file.read(length)

    def touch(self, entry: Entry) -> None:
        """Count one use of the entry, now (its place in the eviction order)."""
        used = replace(entry, hits=entry.hits + 1, last_used=time.time())
        with contextlib.suppress(FileNotFoundError):
            _write_json(self.directory / entry.key / ENTRY_FILE, used.to_json())

    def entries(self) -> list[Entry]:
        """Every whole entry, most recently used first."""
        if not self.directory.is_dir():
            return []
        found = [
            entry
            for folder in self.directory.iterdir()
            if not folder.name.startswith(".") and (entry := self._read(folder)) is not None
        ]
        return sorted(found, key=lambda entry: entry.last_used, reverse=True)

    def drop(self, selector: str = "") -> list[Entry]:
        """Remove the entries of ``PROGDEF``, ``PROGDEF@VERSION`` or ``KEY`` (every entry
        when empty) and return them."""
        name, _, version = selector.partition("@")
        dropped = [
            entry
            for entry in self.entries()
            if not selector
            or entry.key == selector
            or (entry.progdef == name and version in ("", entry.version))
        ]
        for entry in dropped:
            shutil.rmtree(self.directory / entry.key, ignore_errors=True)
        return dropped

    def _evict(self, *, keep: str) -> None:
        # What a run killed outright left pending: no run records for longer than a day.
        for folder in self.directory.glob(f"{_PENDING}*"):
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < time.time() - PENDING_LEFT_S:
                    shutil.rmtree(folder, ignore_errors=True)
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        for entry in reversed(entries):  # least recently used first
            if total <= self.settings.max_bytes:
                break
            if entry.key != keep:
                shutil.rmtree(self.directory / entry.key, ignore_errors=True)
                total -= entry.size

    def _read(self, folder: Path) -> Entry | None:
        try:
            return Entry.from_json(json.loads((folder / ENTRY_FILE).read_text()))
        except (OSError, KeyError, TypeError, ValueError):
            return None


def _file_hash(path: Path) -> tuple[int, str]:
    """The size and SHA-256 of a file; (-1, "") when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return -1, ""
    return size, digest.hexdigest()


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON file whole or not at all (a crash leaves the old one)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(document, sort_keys=True))
    os.replace(temporary, temporary.with_name(path.name))
