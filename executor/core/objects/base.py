"""The object store interface: where offloaded items are kept (docs/protocol.md, Offloaded
items).

Keys are relative, ``/``-separated paths (``flows/{flow}/{node}.{port}/{n}``); a store
keeps them under its own root (a folder, or an S3 bucket and prefix).
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO, Protocol

from executor.core.errors import ObjectStoreInvalid

# Bytes read or written at once when an object is streamed.
CHUNK_BYTES = 8 * 1024 * 1024
_KEY_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class ObjectStore(Protocol):
    """A place for objects by key, shared by every process of a cluster.

    Attributes:
        url: the store's name: its ``DAGYO_OBJECTS`` URL, without credentials. A reference
            names it, and a consumer refuses one naming another store.
    """

    url: str

    def put(self, key: str, data: bytes | BinaryIO) -> tuple[int, str]:
        """Keep ``data`` (bytes, or a file read to its end) under ``key``, replacing any.

        Returns:
            (size in bytes, SHA-256 as 64 lowercase hex characters) of what was kept.

        Raises:
            ObjectStoreUnavailable: naming the store, when it cannot be written.
        """
        ...

    def get(self, key: str) -> bytes:
        """The whole object under ``key``.

        Raises:
            ObjectMissing: naming the key, when there is none.
            ObjectStoreUnavailable: naming the store, when it cannot be read.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """The object under ``key`` as a file to read (close it when done).

        Raises:
            ObjectMissing: naming the key, when there is none.
            ObjectStoreUnavailable: naming the store, when it cannot be read.
        """
        ...

    def copy(self, key: str, to: str) -> None:
        """Keep the object under ``key`` under ``to`` too (a link or a server-side copy).

        Raises:
            ObjectMissing: naming the key, when there is none.
            ObjectStoreUnavailable: naming the store, when it cannot be written.
        """
        ...

    def delete(self, key: str) -> None:
        """Delete the object under ``key`` (none there: nothing to do).

        Raises:
            ObjectStoreUnavailable: naming the store, when it cannot be changed.
        """
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many.

        Raises:
            ObjectStoreUnavailable: naming the store, when it cannot be changed.
        """
        ...

    def children(self, prefix: str) -> list[str]:
        """The names one level under ``prefix`` (``a/`` holding ``a/b/c`` and ``a/d``:
        ``b``, ``d``), sorted.

        Raises:
            ObjectStoreUnavailable: naming the store, when it cannot be listed.
        """
        ...


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` if it is a relative path of plain names (``a/b.c/0``), else raise.

    Args:
        prefix: the key is a prefix, which ends with ``/`` (or is empty: everything).

    Raises:
        ObjectStoreInvalid: naming the key and the form it must have.
    """
    body = key[:-1] if prefix and key.endswith("/") else key
    if (prefix and not key) or (
        (not prefix or key.endswith("/"))
        and body
        and all(_KEY_PART.match(part) and part not in (".", "..") for part in body.split("/"))
    ):
        return key
    raise ObjectStoreInvalid(
        f"not an object key{' prefix' if prefix else ''}: {key!r} (keys are names of "
        "letters, digits, '.', '_' and '-' joined by '/', none of them '.' or '..'"
        f"{'; a prefix ends with /' if prefix else ''})"
    )


def digest(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()
