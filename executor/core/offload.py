"""Offloaded items: items too large for a frame, kept in an object store and carried by
reference (docs/protocol.md, Offloaded items).

A producing job puts an item whose serialized size is past the threshold under its flow's
prefix (``flows/{flow}/{node}.{port}/{n}``) and sends, in its frame, an empty item and an
``ObjectRef`` (store, key, size, SHA-256) standing for it. A consuming job (or the
scheduler, for exports) fetches the object and checks it before it parses the item: the
store must be its own, the key under its flow's prefix, the size and hash those named.
The scheduler deletes a flow's prefix when the flow ends.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from executor.core.constants import (
    ENV_OBJECTS,
    ENV_OFFLOAD_BYTES,
    ITEM_MAX_BYTES,
    OBJECTS_FLOWS_PREFIX,
    OFFLOAD_BYTES,
)
from executor.core.errors import (
    ObjectMissing,
    ObjectStoreInvalid,
    ObjectStoreUnavailable,
    Stopped,
    StreamCorrupt,
)
from executor.core.objects import ObjectStore, check_key, open_store
from executor.core.settings import env_number
from executor.pb.dagyo.v1.frame_pb2 import ObjectRef


def flow_prefix(flow_id: str) -> str:
    """The key prefix of every object of a flow: ``flows/{flow}/``."""
    return f"{OBJECTS_FLOWS_PREFIX}{flow_id}/"


def default_objects_url(environ: Mapping[str, str] | None = None) -> str:
    """The folder store of `dagyo run` and `dagyo up` when DAGYO_OBJECTS is unset: the
    ``dagyo/objects`` folder of the user's cache (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    environ = os.environ if environ is None else environ
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache).resolve() / "dagyo" / "objects").as_uri()


@dataclass(frozen=True)
class Offload:
    """Where a process offloads items, and from what size.

    Attributes:
        store: the object store (DAGYO_OBJECTS); None: nothing is offloaded, and a frame
            holding a reference panics its consumer.
        threshold: items of more serialized bytes than this are offloaded
            (DAGYO_OFFLOAD_BYTES).
    """

    store: ObjectStore | None = None
    threshold: int = OFFLOAD_BYTES

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_url: str = ""
    ) -> Offload:
        """Read DAGYO_OBJECTS (else ``default_url``; empty: no store) and DAGYO_OFFLOAD_BYTES.

        Raises:
            ObjectStoreInvalid: for a DAGYO_OBJECTS that is no store URL.
            DagyoError: naming DAGYO_OFFLOAD_BYTES when it is not a size from 1 to 64 MiB.
        """
        environ = os.environ if environ is None else environ
        threshold = env_number(
            environ,
            ENV_OFFLOAD_BYTES,
            OFFLOAD_BYTES,
            int,
            above=0,
            most=ITEM_MAX_BYTES,
            why_most=", the largest item a frame carries inline",
        )
        url = environ.get(ENV_OBJECTS) or default_url
        return cls(store=open_store(url) if url else None, threshold=threshold)


class SerializedBytes(io.RawIOBase):
    """A ``dagyo.types.Bytes`` message's serialized form as a file, read from its data.

    ``SerializeToString`` would hold the data twice more at once (protobuf's buffer, then
    its bytes); this holds its data once (protobuf hands it out as a copy) and gives it to
    the store a piece at a time. Each read but the last returns all it was asked for.
    """

    def __init__(self, data: bytes) -> None:
        length, left = b"", len(data)
        while left > 0x7F:
            length, left = length + bytes([left & 0x7F | 0x80]), left >> 7
        # Field 1 (tag 0x0A), its length, then the data; the empty message is no bytes.
        self._head = b"\x0a" + length + bytes([left]) if data else b""
        self._data = data
        self._at = 0
        self.size = len(self._head) + len(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        head, self._head = self._head, b""
        want = len(self._data) - self._at if size is None or size < 0 else size - len(head)
        chunk = self._data[self._at : self._at + max(want, 0)]
        self._at += len(chunk)
        return head + chunk if head else chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        return len(chunk)


class Offloader:
    """Puts the large items of one output port of one job in the store."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        flow_id: str,
        node: str,
        port: str,
        stop: threading.Event | None = None,
    ) -> None:
        self._store = store
        # A stopped job puts nothing more: its flow's objects are about to be deleted.
        self._stop = stop
        self._prefix = f"{flow_prefix(flow_id)}{node}.{port}/"
        self._numbers = itertools.count()

    def put(self, data: bytes | BinaryIO, index: int) -> bytes:
        """Keep one serialized item (or a file of it, read to its end); return its
        serialized ``ObjectRef`` at ``index``.

        Raises:
            ObjectStoreUnavailable: naming the store, when it cannot be written.
            Stopped: when the job was stopped.
        """
        if self._stop is not None and self._stop.is_set():
            raise Stopped("the flow was stopped")
        key = f"{self._prefix}{next(self._numbers)}"
        size, sha256 = self._store.put(key, data)
        reference = ObjectRef(index=index, store=self._store.url, key=key, size=size, sha256=sha256)
        return reference.SerializeToString()


def check_reference(
    store: ObjectStore | None, reference: ObjectRef, *, flow_id: str, where: str
) -> ObjectStore:
    """Check that a reference names this process's store and a key of its flow.

    Returns:
        the store.

    Raises:
        StreamCorrupt: naming ``where``, for a reference to another store (or when this
            process has none) or to a key outside the flow's prefix.
    """
    what = f"{where}: the offloaded item {reference.index} of a frame ({reference.key})"
    if store is None:
        raise StreamCorrupt(
            f"{what} is in the object store {reference.store}, and this process has none: "
            "set DAGYO_OBJECTS to it"
        )
    if reference.store != store.url:
        raise StreamCorrupt(
            f"{what} names the object store {reference.store}, not this flow's {store.url}"
        )
    prefix = flow_prefix(flow_id)
    try:
        outside = not reference.key.startswith(prefix) or not check_key(reference.key)
    except ObjectStoreInvalid:
        outside = True
    if outside:
        raise StreamCorrupt(f"{what} is outside the flow's objects ({prefix}): it was refused")
    return store


def fetch(store: ObjectStore | None, reference: ObjectRef, *, flow_id: str, where: str) -> bytes:
    """The serialized item a reference stands for, checked.

    Args:
        where: the stream as errors name it (``stream a.out -> b.in``, an export).

    Raises:
        StreamCorrupt: naming ``where``, for a reference to another store, to a key outside
            the flow's prefix, to no object, or to an object of another size or hash.
        ObjectStoreUnavailable: naming the store (and ``where``), when it cannot be read.
    """
    store = check_reference(store, reference, flow_id=flow_id, where=where)
    what = f"{where}: the offloaded item {reference.index} of a frame ({reference.key})"
    try:
        data = store.get(reference.key)
    except ObjectMissing as e:
        raise StreamCorrupt(f"{what} is not in the object store {store.url}") from e
    except ObjectStoreUnavailable as e:
        raise ObjectStoreUnavailable(e.store, f"{where}: {e.reason}") from e
    if len(data) != reference.size:
        raise StreamCorrupt(f"{what} is {len(data)} bytes, not the {reference.size} sent")
    if hashlib.sha256(data).hexdigest() != reference.sha256:
        raise StreamCorrupt(f"{what} does not have the SHA-256 sent ({reference.sha256})")
    return data


class BytesReader(io.RawIOBase):
    """The ``data`` of an offloaded ``dagyo.types.Bytes`` item, read from the store as a
    file: the item never sits in memory whole. Its size and SHA-256 are checked as it is
    read; reading past its end raises StreamCorrupt (naming the edge) when they differ."""

    def __init__(self, handle: BinaryIO, reference: ObjectRef, what: str) -> None:
        self._handle = handle
        self._reference = reference
        self._what = what
        self._sha = hashlib.sha256()
        self._size = 0
        self._checked = False
        # A serialized Bytes is field 1 (tag 0x0A), its length, then the data; the empty
        # one is no bytes at all.
        head = self._take(1)
        if head and head != b"\x0a":
            raise StreamCorrupt(f"{what} is not a dagyo.types.Bytes")
        length, shift = 0, 0
        while head:
            byte = self._take(1)
            if not byte:
                raise StreamCorrupt(f"{what} ends inside its length")
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        self.length = length
        self._left = length

    def _take(self, count: int) -> bytes:
        data = self._handle.read(count)
        self._sha.update(data)
        self._size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; at the end, check the object's size and SHA-256.

        Raises:
            StreamCorrupt: naming the edge, when they are not the reference's.
        """
        view = memoryview(buffer).cast("B")
        data = self._take(min(len(view), self._left)) if self._left else b""
        view[: len(data)] = data
        self._left -= len(data)
        if not data:
            self._check()
        return len(data)

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        self._take(1 << 20)  # anything past the data (unknown fields) counts in the hash
        if self._size != self._reference.size:
            raise StreamCorrupt(f"{self._what} is not the {self._reference.size} bytes sent")
        if self._sha.hexdigest() != self._reference.sha256:
            raise StreamCorrupt(f"{self._what} does not have the SHA-256 sent")

    def close(self) -> None:
        self._handle.close()
        super().close()


def open_bytes(
    store: ObjectStore | None, reference: ObjectRef, *, flow_id: str, where: str
) -> BytesReader:
    """The data of an offloaded ``dagyo.types.Bytes`` item as a file, checked as it is read.

    Raises:
        StreamCorrupt: as :func:`fetch`.
        ObjectStoreUnavailable: naming the store, when it cannot be read.
    """
    store = check_reference(store, reference, flow_id=flow_id, where=where)
    what = f"{where}: the offloaded item {reference.index} of a frame ({reference.key})"
    try:
        handle = store.open(reference.key)
    except ObjectMissing as e:
        raise StreamCorrupt(f"{what} is not in the object store {store.url}") from e
    return BytesReader(handle, reference, what)
