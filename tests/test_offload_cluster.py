"""Offloaded items on a local cluster (`dagyo up`): a large item crosses an edge between
executor processes through the object store, and a flow's objects are gone once it ends,
however it ended."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from executor.core.objects import ObjectStore, open_store
from executor.types import Bytes
from scheduler.client.api import SchedulerClient
from scheduler.local_cluster import LocalCluster, private_catalogue
from scheduler.service.config import SchedulerSettings
from tests.cluster import state_of
from tests.conftest import ROOT
from tests.objectstores import s3_server
from tests.waiting import eventually

ENDED = {"succeeded", "failed", "cancelled"}
LARGE = ROOT / "examples" / "large" / "progdefs"


@pytest.fixture(scope="module", params=["file", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ObjectStore, dict[str, str]]]:
    """The object store, and the environment that reaches it (AWS_* for S3)."""
    if request.param == "file":
        yield open_store((tmp_path_factory.mktemp("objects") / "store").as_uri()), {}
    else:
        with s3_server("cluster") as environment:
            yield open_store("s3://cluster/objects"), environment


@pytest.fixture(scope="module")
def objects(store: tuple[ObjectStore, dict[str, str]]) -> ObjectStore:
    return store[0]


@pytest.fixture(scope="module")
def cluster(
    broker_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    store: tuple[ObjectStore, dict[str, str]],
) -> Iterator[LocalCluster]:
    objects, environment = store
    workdir = tmp_path_factory.mktemp("offload")
    catalogue = private_catalogue(LARGE, workdir / "progdefs", ["make_bytes", "sha256"], tag="test")
    env = {
        "DAGYO_METRICS_PORT": "-1",
        "PYTHONPATH": str(ROOT),
        "DAGYO_OBJECTS": objects.url,
        **environment,
    }
    settings = SchedulerSettings(
        queue_url=broker_url,
        address="127.0.0.1:0",
        state_path=str(workdir / "state.sqlite3"),
        progdefs=catalogue,
        metrics_port=0,
        objects_url=objects.url,
    )
    cluster = LocalCluster.from_settings(settings, extra_env=env)
    cluster.start()
    yield cluster
    cluster.stop()
    cluster.delete_mailboxes()


def flow(sizes: list[int]) -> str:
    return json.dumps(
        {
            "name": "large",
            "nodes": {"make": {"progdef": "make_bytes"}, "hash": {"progdef": "sha256"}},
            "edges": [{"from": "make.data", "to": "hash.data"}],
            "consts": [{"to": "make.size", "values": [{"value": s} for s in sizes]}],
            "exports": {"digest": "hash.digest"},
        }
    )


def expected(size: int) -> str:
    block = bytes(range(256)) * 4096
    return hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()


def wait_end(client: SchedulerClient, flow_id: str) -> Any:
    return eventually(
        lambda: client.get(flow_id),
        120,
        until=lambda record: state_of(record) in ENDED,
        what=f"the end of flow {flow_id}",
    )


def test_a_large_item_crosses_executors_and_its_objects_are_deleted(
    cluster: LocalCluster, objects: ObjectStore
) -> None:
    size = 20_000_000
    with SchedulerClient(cluster.address) as client:
        flow_id = client.submit(flow([size]), source="large.json")
        record = wait_end(client, flow_id)
    assert state_of(record) == "succeeded", record
    assert [json.loads(e.value_json)["text"] for e in record.exports] == [expected(size)]
    eventually(lambda: objects.children("flows/") == [], 30, what="the flow's objects deleted")


def test_a_flow_cancelled_mid_stream_leaves_no_object(
    cluster: LocalCluster, objects: ObjectStore
) -> None:
    with SchedulerClient(cluster.address) as client:
        flow_id = client.submit(flow([3_000_000] * 400), source="large.json")
        eventually(lambda: flow_id in objects.children("flows/"), 60, what="objects put")
        client.cancel(flow_id)
        record = wait_end(client, flow_id)
    assert state_of(record) == "cancelled", record
    eventually(lambda: objects.children("flows/") == [], 30, what="the flow's objects deleted")


def test_a_starting_scheduler_sweeps_the_objects_of_ended_flows_only(
    cluster: LocalCluster, objects: ObjectStore
) -> None:
    with SchedulerClient(cluster.address) as client:
        ended = client.submit(flow([10]), source="large.json")
        wait_end(client, ended)
    # What a crash between a flow's end and its delete leaves, and another cluster's.
    objects.put(f"flows/{ended}/make.data/0", b"left")
    objects.put("flows/0123456789ab/make.data/0", b"not ours")
    cluster.stop_scheduler()
    cluster.start_scheduler()
    eventually(
        lambda: objects.children("flows/") == ["0123456789ab"], 30, what="the ended flow swept"
    )
    objects.delete_prefix("flows/")


def test_an_exported_offloaded_item_is_kept_with_the_exports_and_downloaded(
    cluster: LocalCluster, objects: ObjectStore, tmp_path: Path
) -> None:
    size = 3_000_000
    exported = json.loads(flow([size, 10]))
    exported["exports"]["data"] = "make.data"
    with SchedulerClient(cluster.address) as client:
        flow_id = client.submit(json.dumps(exported), source="large.json")
        record = wait_end(client, flow_id)
    assert state_of(record) == "succeeded", record
    data = [json.loads(e.value_json) for e in record.exports if e.export == "data"]
    (reference,) = [d["@offloaded"] for d in data if "@offloaded" in d]
    item = objects.get(reference["key"])
    assert reference == {
        "typename": "dagyo.types.Bytes",
        "size": len(item),
        "sha256": hashlib.sha256(item).hexdigest(),
        "key": f"exports/{flow_id}/data/0.0",
    }
    block = bytes(range(256)) * 4096
    assert Bytes.FromString(item).data == (block * 3)[:size]
    assert data[1] == {"data": "AAECAwQFBgcICQ=="}
    eventually(lambda: objects.children("flows/") == [], 30, what="the flow's objects deleted")

    # `dagyo flow export` downloads both, the offloaded one from the store.
    out = tmp_path / "out"
    result = dagyo(cluster, "flow", "export", flow_id, "data", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["item"], x["size"], x["sha256"]) for x in lines] == [
        (0, len(item), reference["sha256"]),
        (1, 12, hashlib.sha256(Bytes(data=bytes(range(10))).SerializeToString()).hexdigest()),
    ]
    assert (out / "data-0.binpb").read_bytes() == item
    assert Bytes.FromString((out / "data-1.binpb").read_bytes()).data == bytes(range(10))
    unknown = dagyo(cluster, "flow", "export", flow_id, "nothing", "--out", str(out))
    assert unknown.returncode == 2
    assert "has no export 'nothing' (its exports: data, digest)" in unknown.stderr
    objects.delete_prefix("exports/")


def test_exported_items_are_copied_off_the_brokers_io_thread(
    cluster: LocalCluster, objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    copy = type(objects).copy

    def noting(store: ObjectStore, key: str, to: str) -> None:
        threads.append(threading.current_thread().name)
        copy(store, key, to)  # type: ignore[arg-type]

    monkeypatch.setattr(type(objects), "copy", noting)
    exported = json.loads(flow([3_000_000, 3_000_000]))
    exported["exports"]["data"] = "make.data"
    with SchedulerClient(cluster.address) as client:
        flow_id = client.submit(json.dumps(exported), source="large.json")
        record = wait_end(client, flow_id)
    assert state_of(record) == "succeeded", record
    assert threads == ["dagyo-export-copies"] * 2  # never dagyo-scheduler-amqp
    objects.delete_prefix("exports/")


def test_exported_items_the_record_drops_leave_no_object(
    cluster: LocalCluster, objects: ObjectStore, tmp_path: Path
) -> None:
    # Room in the record for one reference line: the next two items are dropped.
    line = json.dumps(
        {
            "@offloaded": {
                "typename": "dagyo.types.Bytes",
                "size": 3_000_005,
                "sha256": "0" * 64,
                "key": "exports/0123456789ab/data/0.0",
            }
        },
        separators=(",", ":"),
    )
    settings = cluster.settings
    cluster.stop_scheduler()
    cluster.settings = dataclasses.replace(settings, export_cap_bytes=len(line) * 3 // 2)
    cluster.start_scheduler()
    try:
        exported = {
            "name": "made",
            "nodes": {"make": {"progdef": "make_bytes"}},
            "consts": [{"to": "make.size", "values": [{"value": 3_000_000}] * 3}],
            "exports": {"data": "make.data"},
        }
        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(json.dumps(exported), source="large.json")
            record = wait_end(client, flow_id)
    finally:
        cluster.stop_scheduler()
        cluster.settings = settings
        cluster.start_scheduler()
    assert state_of(record) == "succeeded", record
    assert (len(record.exports), record.exports_dropped) == (1, 2), record
    # The kept one is there and downloads; the dropped ones left nothing.
    assert objects.children(f"exports/{flow_id}/data/") == ["0.0"]
    result = dagyo(cluster, "flow", "export", flow_id, "data", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    block = bytes(range(256)) * 4096
    item = (tmp_path / "data-0.binpb").read_bytes()
    assert Bytes.FromString(item).data == (block * 3)[:3_000_000]
    eventually(lambda: objects.children("flows/") == [], 30, what="the flow's objects deleted")
    objects.delete_prefix("exports/")


def test_a_producer_killed_mid_stream_leaves_no_object(
    cluster: LocalCluster, objects: ObjectStore
) -> None:
    (producer,) = cluster.executors["make_bytes"]
    try:
        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(flow([9_000_000] * 400), source="large.json")
            eventually(lambda: flow_id in objects.children("flows/"), 60, what="objects put")
            producer.kill()  # SIGKILL: mid-upload, perhaps
            record = wait_end(client, flow_id)
        assert state_of(record) == "failed", record
        eventually(lambda: objects.children("flows/") == [], 30, what="the flow's objects gone")
        if objects.url.startswith("s3://"):
            uploads = boto3.session.Session().client("s3").list_multipart_uploads(Bucket="cluster")
            assert uploads.get("Uploads", []) == []
    finally:
        producer.wait()
        cluster.start_executor(cluster.catalogue["make_bytes"])
        assert cluster.wait_ready() == []


def dagyo(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGYO_SCHEDULER": cluster.address, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
