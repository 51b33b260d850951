"""S3-compatible storage as an object store (``DAGYO_OBJECTS=s3://bucket/prefix``).

Credentials, region and endpoint come from the standard settings (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible servers), read by boto3. boto3 is
imported only when such a store is opened: pip install 'dagyo[s3]'.

The S3 calls used (docs/protocol.md, Offloaded items): PutObject, and for objects past
8 MiB CreateMultipartUpload, UploadPart, CompleteMultipartUpload and AbortMultipartUpload;
GetObject; HeadObject, CopyObject and UploadPartCopy (an export kept); ListObjectsV2 (with
and without a delimiter); DeleteObjects; ListMultipartUploads (and AbortMultipartUpload)
for uploads a killed producer left unfinished under a flow's prefix.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, BinaryIO

from executor.core.errors import ObjectMissing, ObjectStoreInvalid, ObjectStoreUnavailable
from executor.core.objects.base import CHUNK_BYTES, check_key

# A store that does not answer fails the call within seconds, never hangs the job: the
# connection attempt and each read are bounded, and botocore retries twice more at most.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 3


class _Hashing:
    """A file read through, hashing and counting what was read (read only: s3transfer
    then reads it once, in order, as a stream)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self.sha.update(chunk)
        self.size += len(chunk)
        return chunk


class S3Store:
    """Objects in an S3 bucket, under a prefix of it (empty: the whole bucket)."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise ObjectStoreInvalid(
                "DAGYO_OBJECTS: an s3:// URL needs a bucket: s3://BUCKET/PREFIX"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError as e:
            raise ObjectStoreInvalid(
                f"DAGYO_OBJECTS={self.url} needs boto3: pip install 'dagyo[s3]'"
            ) from e
        self._client: Any = boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            ),
        )
        # Four parts in flight, not boto3's ten: as fast on a small machine, and a
        # producer's peak memory stays near its item's size (each thread's buffers stay
        # allocated to it).
        self._transfer = TransferConfig(
            multipart_threshold=CHUNK_BYTES, multipart_chunksize=CHUNK_BYTES, max_concurrency=4
        )

    def _fail(self, error: Exception, key: str = "") -> Exception:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            return ObjectMissing(f"no object {key} in the object store {self.url}")
        reason = f"{type(error).__name__}: {error}"
        return ObjectStoreUnavailable(self.url, reason)

    def put(self, key: str, data: bytes | BinaryIO) -> tuple[int, str]:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        name = self.prefix + check_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            size, sha = len(data), hashlib.sha256(data).hexdigest()
            source: Any = io.BytesIO(data)  # shares the bytes, copies nothing
        else:
            source = _Hashing(data)
        try:
            self._client.upload_fileobj(source, self.bucket, name, Config=self._transfer)
        except Exception as e:
            raise self._fail(e, key) from e
        if isinstance(source, _Hashing):
            size, sha = source.size, source.sha.hexdigest()
        return size, sha

    def get(self, key: str) -> bytes:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except Exception as e:
            raise self._fail(e, key) from e
        body: BinaryIO = answer["Body"]
        return body

    def copy(self, key: str, to: str) -> None:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        source = {"Bucket": self.bucket, "Key": self.prefix + check_key(key)}
        try:
            self._client.copy(
                source, self.bucket, self.prefix + check_key(to), Config=self._transfer
            )
        except Exception as e:
            raise self._fail(e, key) from e

    def _keys(self, prefix: str) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def delete(self, key: str) -> None:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        name = self.prefix + check_key(key)
        try:
            self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": name}], "Quiet": True}
            )
        except Exception as e:
            raise self._fail(e, key) from e

    def delete_prefix(self, prefix: str) -> int:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        check_key(prefix, prefix=True)
        try:
            keys = self._keys(prefix)
            for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 at most
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            self._abort_uploads(prefix)
        except Exception as e:
            raise self._fail(e) from e
        return len(keys)

    def _abort_uploads(self, prefix: str) -> None:
        """Abort the multipart uploads under ``prefix`` that never completed (a producer
        killed while it uploaded): S3 keeps their parts, unlisted, until then."""
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            for upload in page.get("Uploads", ()):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )

    def children(self, prefix: str) -> list[str]:
        """See :class:`executor.core.objects.base.ObjectStore`."""
        check_key(prefix, prefix=True)
        full = self.prefix + prefix
        names: set[str] = set()
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            )
            for page in pages:
                names.update(
                    p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", ())
                )
                names.update(item["Key"][len(full) :] for item in page.get("Contents", ()))
        except Exception as e:
            raise self._fail(e) from e
        return sorted(names)
