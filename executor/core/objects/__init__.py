"""Object stores: where offloaded items are kept (a folder, or S3-compatible storage).

:func:`open_store` turns a ``DAGYO_OBJECTS`` URL into a store.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from executor.core.errors import ObjectStoreInvalid
from executor.core.objects.base import ObjectStore, check_key, digest
from executor.core.objects.file import FileStore

__all__ = ["FileStore", "ObjectStore", "check_key", "digest", "open_store"]


def open_store(url: str) -> ObjectStore:
    """The object store a ``DAGYO_OBJECTS`` URL names.

    Args:
        url: ``file:///path`` (a folder, made when missing) or ``s3://bucket/prefix``.

    Raises:
        ObjectStoreInvalid: naming the URL and the forms it may take.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return FileStore(Path(urllib.parse.unquote(parts.path)))
    if parts.scheme == "s3" and parts.netloc and not parts.query and not parts.fragment:
        from executor.core.objects.s3 import S3Store

        return S3Store(parts.netloc, parts.path)
    raise ObjectStoreInvalid(
        f"DAGYO_OBJECTS={url!r} is not an object store URL: use file:///ABSOLUTE/PATH (a "
        "folder) or s3://BUCKET/PREFIX (S3-compatible storage, with AWS_ENDPOINT_URL for "
        "servers other than AWS)"
    )
