"""The object store contract, for the folder store and S3 (moto's server on loopback)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from executor.core.errors import (
    ObjectMissing,
    ObjectStoreInvalid,
    ObjectStoreUnavailable,
)
from executor.core.objects import ObjectStore, open_store
from tests.objectstores import free_port, s3_server


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield open_store((tmp_path / "objects").as_uri())
    else:
        with s3_server("contract"):
            yield open_store("s3://contract/some/prefix")


def test_put_returns_size_and_sha256_and_get_gives_the_bytes_back(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40_000  # past one multipart chunk on S3
    size, sha = store.put("flows/f1/a.out/0", data)
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.get("flows/f1/a.out/0") == data
    with store.open("flows/f1/a.out/0") as handle:
        assert handle.read(5) == data[:5]


def test_put_of_a_file_streams_it(store: ObjectStore) -> None:
    data = b"x" * 3_000_000
    assert store.put("k/file", io.BytesIO(data)) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.get("k/file") == data


def test_put_replaces_and_empty_objects_are_kept(store: ObjectStore) -> None:
    store.put("k/one", b"first")
    store.put("k/one", b"")
    assert store.get("k/one") == b""


def test_a_missing_key_is_named(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing, match="no object flows/none/0 in the object store"):
        store.get("flows/none/0")


def test_delete_prefix_deletes_that_prefix_only(store: ObjectStore) -> None:
    store.put("flows/f1/a.out/0", b"1")
    store.put("flows/f1/b.out/0", b"2")
    store.put("flows/f2/a.out/0", b"3")
    store.put("flows/f10/a.out/0", b"4")
    assert store.children("flows/") == ["f1", "f10", "f2"]
    assert store.delete_prefix("flows/f1/") == 2
    assert store.children("flows/") == ["f10", "f2"]
    assert store.get("flows/f2/a.out/0") == b"3"
    with pytest.raises(ObjectMissing):
        store.get("flows/f1/a.out/0")
    assert store.delete_prefix("flows/f1/") == 0
    assert store.children("nothing/") == []


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "a b", ""])
def test_keys_outside_the_store_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ObjectStoreInvalid, match="not an object key"):
        store.put(key, b"x")


def test_bad_urls_say_the_forms() -> None:
    for url in ("ftp://x/y", "file://relative", "s3:///nobucket"):
        with pytest.raises(ObjectStoreInvalid, match="file:///ABSOLUTE/PATH .* s3://BUCKET"):
            open_store(url)


def test_an_unreachable_s3_store_is_named_and_does_not_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = open_store("s3://gone/p")
    with pytest.raises(
        ObjectStoreUnavailable, match="cannot reach the object store at s3://gone/p/"
    ):
        store.put("k/0", b"x")


def test_an_unwritable_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = open_store((tmp_path / "file").as_uri())
    with pytest.raises(ObjectStoreUnavailable, match="cannot reach the object store at file://"):
        store.put("k/0", b"x")


def test_delete_deletes_one_object_and_a_missing_one_is_no_error(store: ObjectStore) -> None:
    store.put("exports/f1/x/0.0", b"a")
    store.put("exports/f1/x/1.0", b"b")
    store.delete("exports/f1/x/0.0")
    store.delete("exports/f1/x/0.0")
    assert store.children("exports/f1/x/") == ["1.0"]


def test_delete_prefix_aborts_uploads_left_unfinished_there() -> None:
    # An executor killed while it uploads leaves a multipart upload, whose parts S3 keeps
    # (and bills) without listing them as objects.
    with s3_server("uploads"):
        store = open_store("s3://uploads/p")
        client = boto3.session.Session().client("s3")
        for key in ("p/flows/f1/a.out/0", "p/flows/f2/a.out/0"):
            upload = client.create_multipart_upload(Bucket="uploads", Key=key)
            client.upload_part(
                Bucket="uploads", Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
            )
        assert store.delete_prefix("flows/f1/") == 0
        left = client.list_multipart_uploads(Bucket="uploads").get("Uploads", [])
        assert [u["Key"] for u in left] == ["p/flows/f2/a.out/0"]


def test_copy_keeps_the_object_under_both_keys(store: ObjectStore) -> None:
    store.put("flows/f1/a.out/0", b"kept")
    store.copy("flows/f1/a.out/0", "exports/f1/x/0")
    store.delete_prefix("flows/f1/")
    assert store.get("exports/f1/x/0") == b"kept"
    with pytest.raises(ObjectMissing):
        store.copy("flows/f1/a.out/0", "exports/f1/x/1")
