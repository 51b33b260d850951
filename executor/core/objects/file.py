"""A folder as an object store (``DAGYO_OBJECTS=file:///path``): one file per object.

For one machine (`dagyo run`, `dagyo up`) or a volume every pod mounts. An object is
written to a temporary file beside it and renamed into place, so a reader never sees half
of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from executor.core.errors import ObjectMissing, ObjectStoreUnavailable
from executor.core.objects.base import CHUNK_BYTES, check_key


class FileStore:
    """Objects as files under a root folder (made when missing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes | BinaryIO) -> tuple[int, str]:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        path = self._path(key)
        sha = hashlib.sha256()
        size = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".put-")
            try:
                with os.fdopen(handle, "wb") as out:
                    if isinstance(data, bytes | bytearray | memoryview):
                        sha.update(data)
                        out.write(data)
                        size = len(data)
                    else:
                        while chunk := data.read(CHUNK_BYTES):
                            sha.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e
        return size, sha.hexdigest()

    def get(self, key: str) -> bytes:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        with self.open(key) as handle:
            return handle.read()

    def open(self, key: str) -> BinaryIO:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        path = self._path(key)
        try:
            return path.open("rb")
        except FileNotFoundError as e:
            raise ObjectMissing(f"no object {key} in the object store {self.url}") from e
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e

    def copy(self, key: str, to: str) -> None:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        source, target = self._path(key), self._path(to)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)  # objects are never changed in place: share the file
            except FileNotFoundError:
                raise
            except OSError:
                shutil.copyfile(source, target)
        except FileNotFoundError as e:
            raise ObjectMissing(f"no object {key} in the object store {self.url}") from e
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e

    def delete(self, key: str) -> None:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e

    def delete_prefix(self, prefix: str) -> int:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        check_key(prefix, prefix=True)
        folder = self.root.joinpath(*prefix.rstrip("/").split("/")) if prefix else self.root
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        try:
            if prefix:
                shutil.rmtree(folder)
            else:
                for child in folder.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        except FileNotFoundError:
            pass  # deleted meanwhile by another process ending the same flow
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e
        return count

    def children(self, prefix: str) -> list[str]:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        check_key(prefix, prefix=True)
        folder = self.root.joinpath(*prefix.rstrip("/").split("/")) if prefix else self.root
        try:
            return sorted(child.name for child in folder.iterdir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ObjectStoreUnavailable(self.url, f"{type(e).__name__}: {e}") from e
