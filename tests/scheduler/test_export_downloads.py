"""Downloading an export's items: only a caller who sees the flow gets them, offloaded ones
from the object store, each checked by its size and SHA-256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from executor.core.errors import FlowNotFound, PreconditionFailed, RequestInvalid
from executor.core.objects import FileStore
from executor.types import Bytes
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal, Quotas
from scheduler.service.downloads import ExportDownloads
from scheduler.service.flowstate import ExportStream, FlowRuntime
from tests.scheduler.fake_records import Lifecycle, Records

ITEM = Bytes(data=b"x" * 3_000_000).SerializeToString()


def downloads(tmp_path: Path, *, with_store: bool = True) -> tuple[ExportDownloads, FileStore]:
    objects = FileStore(tmp_path / "objects")
    objects.put("exports/f1/data/0.0", ITEM)
    reference = {
        "typename": "dagyo.types.Bytes",
        "size": len(ITEM),
        "sha256": hashlib.sha256(ITEM).hexdigest(),
        "key": "exports/f1/data/0.0",
    }
    record = pb.FlowRecord(
        id="f1",
        tenant="a",
        exports=[
            pb.Export(export="data", value_json=json.dumps({"@offloaded": reference})),
            pb.Export(export="data", value_json='{"data":"AAE="}'),
        ],
    )
    runtime = FlowRuntime(exports={"data": ExportStream("q", "dagyo.types.Bytes", "make.data")})
    records = Records({"f1": record}, {"f1": runtime})
    return ExportDownloads(Lifecycle(records, objects if with_store else None)), objects


def tenant(name: str, role: str = "user") -> Principal:
    return Principal(tenant=name, role=role, quotas=Quotas())


def items(chunks: list[pb.ExportChunk]) -> list[tuple[bytes, int, str]]:
    found: list[tuple[bytes, int, str]] = []
    data = b""
    for chunk in chunks:
        data += chunk.data
        if chunk.item_end:
            found.append((data, chunk.size, chunk.sha256))
            data = b""
    return found


def test_the_owner_gets_every_item_offloaded_ones_from_the_store(tmp_path: Path) -> None:
    service, _ = downloads(tmp_path)
    chunks = list(service.items(tenant("a"), "f1", "data"))
    assert {c.typename for c in chunks} == {"dagyo.types.Bytes"}
    assert max(len(c.data) for c in chunks) == 1024 * 1024
    small = Bytes(data=b"\0\1").SerializeToString()
    assert items(chunks) == [
        (ITEM, len(ITEM), hashlib.sha256(ITEM).hexdigest()),
        (small, len(small), hashlib.sha256(small).hexdigest()),
    ]


def test_another_tenant_cannot_read_the_flows_objects(tmp_path: Path) -> None:
    service, _ = downloads(tmp_path)
    with pytest.raises(FlowNotFound, match="no flow 'f1' on this scheduler"):
        list(service.items(tenant("b"), "f1", "data"))
    assert len(items(list(service.items(tenant("b", "admin"), "f1", "data")))) == 2


def test_an_unknown_export_names_the_exports(tmp_path: Path) -> None:
    service, _ = downloads(tmp_path)
    with pytest.raises(RequestInvalid, match=r"has no export 'nope' \(its exports: data\)"):
        list(service.items(tenant("a"), "f1", "nope"))


def test_an_offloaded_item_gone_or_no_store_is_said(tmp_path: Path) -> None:
    service, objects = downloads(tmp_path)
    objects.delete_prefix("exports/")
    with pytest.raises(PreconditionFailed, match="an offloaded exported item is gone"):
        list(service.items(tenant("a"), "f1", "data"))
    service, _ = downloads(tmp_path / "again", with_store=False)
    with pytest.raises(PreconditionFailed, match="set DAGYO_OBJECTS"):
        list(service.items(tenant("a"), "f1", "data"))
