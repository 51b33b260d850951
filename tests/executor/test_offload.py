"""Offloaded items: large items go through the object store by reference and come back
whole; a reference that does not check panics naming the edge; nothing is left behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.stream import FrameWriter, StreamSettings
from executor.core.errors import ObjectStoreUnavailable, StreamCorrupt
from executor.core.objects import FileStore, ObjectStore, open_store
from executor.core.offload import Offload, Offloader, fetch, flow_prefix, open_bytes
from executor.core.progdef import load_catalogue
from executor.inputs import InputStream
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import Bytes
from tests.conftest import ROOT
from tests.embedded import catalogue_with, run_flow
from tests.objectstores import free_port, s3_server
from tests.waiting import eventually

LARGE = ROOT / "examples" / "large" / "progdefs"
FLOW = "f0123456789a"
EDGE = "make.data -> hash.data"


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield open_store((tmp_path / "objects").as_uri())
    else:
        with s3_server("offload"):
            yield open_store("s3://offload/dagyo")


def expected(size: int) -> str:
    block = bytes(range(256)) * 4096
    return hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()


def large_flow(size: int) -> dict[str, Any]:
    return {
        "name": "large",
        "nodes": {"make": {"progdef": "make_bytes"}, "hash": {"progdef": "sha256"}},
        "edges": [{"from": "make.data", "to": "hash.data"}],
        "consts": [{"to": "make.size", "values": [{"value": size}, {"value": 10}]}],
        "exports": {"digest": "hash.digest", "data": "make.data"},
    }


@pytest.mark.parametrize("size", [3_000_000, 70 * 1024 * 1024])
def test_a_large_bytes_item_crosses_an_edge_and_its_objects_are_deleted(
    size: int, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_OBJECTS", store.url)
    exports, result = run_flow(large_flow(size), catalogue=catalogue_with(LARGE), serialize=True)
    assert result.state == "succeeded", result.failure
    assert [d["text"] for d in exports["digest"]] == [expected(size), expected(10)]
    assert [len(e.get("data", "")) for e in exports["data"]][1] == 16  # base64 of 10 bytes
    assert store.children("flows/") == []


def test_an_unreachable_store_at_publish_fails_the_flow_naming_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DAGYO_OBJECTS", "s3://gone/p")
    _, result = run_flow(large_flow(2_000_000), catalogue=catalogue_with(LARGE), serialize=True)
    assert result.state == "failed"
    assert result.failure is not None and result.failure.node == "make"
    assert "cannot reach the object store at s3://gone/p/" in result.failure.error


def test_an_unwritable_folder_store_at_publish_fails_the_flow_naming_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "objects").write_text("a file where the store's folder should be")
    url = (tmp_path / "objects").as_uri()
    monkeypatch.setenv("DAGYO_OBJECTS", url)
    _, result = run_flow(large_flow(2_000_000), catalogue=catalogue_with(LARGE), serialize=True)
    assert result.state == "failed"
    assert result.failure is not None and result.failure.node == "make"
    assert f"cannot reach the object store at {url}" in result.failure.error


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_dagyo_run_stopped_mid_stream_leaves_no_object(tmp_path: Path, how: signal.Signals) -> None:
    objects = tmp_path / "objects"
    flow = tmp_path / "many.json"
    many = large_flow(3_000_000)
    many["consts"][0]["values"] = [{"value": 3_000_000}] * 400
    flow.write_text(json.dumps(many))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGYO_OBJECTS": objects.as_uri(),
        "DAGYO_EMBEDDED_SERIALIZE": "1",
        "DAGYO_CACHE_DIR": str(tmp_path / "cache"),
    }
    # Ctrl-C reaches the process as SIGINT with Python's handler on (not ignored as it is
    # in a background job): started through -c, which puts it back.
    start = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    run = subprocess.Popen(
        [sys.executable, "-c", start + "from scheduler.cli import main; main()", "run"]
        + [str(flow), "--no-cache", "--progdefs", str(LARGE)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = FileStore(objects)
        eventually(lambda: bool(store.children("flows/")), 60, what="objects offloaded")
        run.send_signal(how)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, err
    assert "cancelled: interrupted" in err
    assert store.children("flows/") == []


def _writer(store: ObjectStore, sent: list[bytes]) -> FrameWriter:
    class Sink:
        def send(self, frame: bytes, *, block: bool) -> bool:
            sent.append(frame)
            return True

        def close(self) -> None:
            pass

    return FrameWriter(
        Sink(),  # type: ignore[arg-type]
        settings=StreamSettings(frame_max_bytes=100, offload=Offload(store, threshold=100)),
        flusher=Flusher(),
        typename="dagyo.types.Bytes",
        offloader=Offloader(store, flow_id=FLOW, node="make", port="data"),
    )


def _read(store: ObjectStore | None, frames: list[bytes], flow_id: str = FLOW) -> list[Any]:
    inbox = Inbox(threading.Event())
    inbox.add_port("data")
    for frame in frames:
        inbox.put("data", frame)
    stream = InputStream(
        port="data",
        edge=EDGE,
        message_class=Bytes,
        inbox=inbox,
        fetch=lambda reference, where: fetch(store, reference, flow_id=flow_id, where=where),
    )
    return list(stream)


def test_items_past_the_threshold_travel_by_reference_in_order(store: ObjectStore) -> None:
    sent: list[bytes] = []
    writer = _writer(store, sent)
    items = [Bytes(data=b"a"), Bytes(data=b"b" * 500), Bytes(data=b"c"), Bytes(data=b"d" * 101)]
    for item in items:
        writer.add(item)
    writer.close()
    # A frame ends with its offloaded item (the threshold is at least a frame's bytes): a
    # consumer holds one of them at a time.
    frames = [Frame.FromString(data) for data in sent]
    assert [[r.index for r in frame.offloaded] for frame in frames] == [[1], [1], []]
    first = frames[0].offloaded[0]
    assert frames[0].items[1] == b"" and first.key == f"flows/{FLOW}/make.data/0"
    assert first.sha256 == hashlib.sha256(items[1].SerializeToString()).hexdigest()
    assert _read(store, sent) == items


def test_a_large_bytes_item_with_unknown_fields_keeps_them(store: ObjectStore) -> None:
    sent: list[bytes] = []
    writer = _writer(store, sent)
    relayed = Bytes.FromString(Bytes(data=b"e" * 300).SerializeToString() + b"\x10\x05")
    writer.add(relayed)
    writer.close()
    (reference,) = Frame.FromString(sent[0]).offloaded
    assert store.get(reference.key) == relayed.SerializeToString()
    (received,) = _read(store, sent)
    assert received.SerializeToString() == relayed.SerializeToString()


def _forged(store: ObjectStore, tmp_path: Path, change: str) -> list[bytes]:
    sent: list[bytes] = []
    writer = _writer(store, sent)
    writer.add(Bytes(data=b"x" * 500))
    writer.close()
    frame = Frame.FromString(sent[0])
    reference = frame.offloaded[0]
    if change == "missing":
        store.delete_prefix(flow_prefix(FLOW))
    elif change == "hash":
        store.put(reference.key, b"y" * reference.size)
    elif change == "size":
        reference.size += 1
    elif change == "outside":
        store.put("flows/another0000/make.data/0", store.get(reference.key))
        reference.key = "flows/another0000/make.data/0"
    elif change == "escape":
        reference.key = f"flows/{FLOW}/../another0000/make.data/0"
    elif change == "store":
        reference.store = FileStore(tmp_path / "elsewhere").url
    elif change == "index":
        reference.index = 1
    return [frame.SerializeToString()]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("missing", "is not in the object store"),
        ("hash", "does not have the SHA-256 sent"),
        ("size", "is 503 bytes, not the 504 sent"),
        ("outside", "is outside the flow's objects"),
        ("escape", "is outside the flow's objects"),
        ("store", "names the object store file://"),
        ("index", "a frame of 1 items refers to an offloaded item 1"),
    ],
)
def test_a_reference_that_does_not_check_panics_naming_the_edge(
    store: ObjectStore, tmp_path: Path, change: str, says: str
) -> None:
    frames = _forged(store, tmp_path, change)
    with pytest.raises(StreamCorrupt, match=f"stream {EDGE}: .*{says}"):
        _read(store, frames)


def test_a_reference_reaching_a_process_without_a_store_says_to_set_one(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    frames = _forged(store, tmp_path, "")
    with pytest.raises(StreamCorrupt, match="this process has none: set DAGYO_OBJECTS"):
        _read(None, frames)


def test_an_unreachable_store_at_fetch_names_the_store_and_the_edge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with s3_server("fetch"):
        store = open_store("s3://fetch/p")
        frames = _forged(store, tmp_path, "")
    with pytest.raises(ObjectStoreUnavailable, match=f"object store at s3://fetch/p/ .*{EDGE}"):
        _read(store, frames)


# A producer offloading one Bytes item: how far its peak RSS grows past the item it holds.
PUT_PEAK = """
import sys
from pathlib import Path

from executor._runtime.flusher import Flusher
from executor._runtime.stream import FrameWriter, StreamSettings
from executor.core.objects import FileStore
from executor.core.offload import Offload, Offloader
from executor.types import Bytes


def peak() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])


class Sink:
    def send(self, frame, *, block):
        return True

    def close(self):
        pass


store = FileStore(Path(sys.argv[1]))
writer = FrameWriter(
    Sink(),
    settings=StreamSettings(offload=Offload(store, threshold=1 << 20)),
    flusher=Flusher(),
    typename="dagyo.types.Bytes",
    offloader=Offloader(store, flow_id="f0123456789a", node="make", port="data"),
)
item = Bytes(data=b"\x01" * int(sys.argv[2]))
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
before = peak()
writer.add(item)
print((peak() - before) * 1024)
"""


def test_offloading_a_bytes_item_holds_at_most_one_more_copy_of_it(tmp_path: Path) -> None:
    size = 100_000_000
    grown = subprocess.run(
        [sys.executable, "-c", PUT_PEAK, str(tmp_path / "objects"), str(size)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # Serializing the item would hold it twice more at once (protobuf's buffer, then its
    # bytes); its data alone is one copy, written to the store a piece at a time.
    assert int(grown.stdout) < 1.3 * size, grown.stdout
    (item,) = (tmp_path / "objects").rglob("0")
    length, left = b"", size  # the item serialized: field 1, its length, its data
    while left > 0x7F:
        length, left = length + bytes([left & 0x7F | 0x80]), left >> 7
    sha = hashlib.sha256(b"\x0a" + length + bytes([left]))
    for _ in range(size // 1_000_000):
        sha.update(b"\x01" * 1_000_000)
    with item.open("rb") as kept:
        assert hashlib.file_digest(kept, "sha256").hexdigest() == sha.hexdigest()


def test_the_example_catalogue_loads() -> None:
    assert set(load_catalogue(LARGE)) == {"make_bytes", "sha256"}


def test_the_benchs_file_reading_sha256_gives_the_examples_digests(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_OBJECTS", store.url)
    store.delete_prefix("flows/")  # moto keeps what tests before put, whatever its server
    catalogue = {**catalogue_with(LARGE), **load_catalogue(ROOT / "bench" / "progdefs")}
    assert catalogue["sha256"].style == "stream"  # bench/progdefs' sha256 reads files()
    exports, result = run_flow(large_flow(3_000_000), catalogue=catalogue, serialize=True)
    assert result.state == "succeeded", result.failure
    assert [d["text"] for d in exports["digest"]] == [expected(3_000_000), expected(10)]
    assert store.children("flows/") == []


def _files(store: ObjectStore, frames: list[bytes]) -> Iterator[Any]:
    inbox = Inbox(threading.Event())
    inbox.add_port("data")
    for frame in frames:
        inbox.put("data", frame)
    stream = InputStream(
        port="data",
        edge=EDGE,
        message_class=Bytes,
        inbox=inbox,
        fetch=lambda reference, where: fetch(store, reference, flow_id=FLOW, where=where),
        open_bytes=lambda reference, where: open_bytes(store, reference, flow_id=FLOW, where=where),
    )
    return stream.files()


def test_files_reads_offloaded_bytes_from_the_store_as_they_are_read(store: ObjectStore) -> None:
    sent: list[bytes] = []
    writer = _writer(store, sent)
    data = [b"a", bytes(range(256)) * 2000, b"", b"c" * 300]
    for item in data:
        writer.add(Bytes(data=item))
    writer.close()
    files = list(_files(store, sent))
    assert [type(f).__name__ for f in files] == ["BytesIO", "BytesReader", "BytesIO", "BytesReader"]
    read = []
    for file in files:
        chunks = iter(lambda f=file: f.read(1000), b"")
        read.append(b"".join(chunks))
        file.close()
    assert read == data


def test_files_checks_the_hash_when_the_end_is_read(store: ObjectStore, tmp_path: Path) -> None:
    frames = _forged(store, tmp_path, "hash")
    with pytest.raises(StreamCorrupt, match=f"stream {EDGE}: .*not a dagyo.types.Bytes"):
        next(_files(store, frames))
    frames = _forged(store, tmp_path / "again", "")
    reference = Frame.FromString(frames[0]).offloaded[0]
    changed = bytearray(store.get(reference.key))
    changed[-1] ^= 1
    store.put(reference.key, bytes(changed))
    file = next(_files(store, frames))
    with pytest.raises(StreamCorrupt, match=f"stream {EDGE}: .*does not have the SHA-256 sent"):
        file.read()
