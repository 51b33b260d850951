"""The dashboard's link to an offloaded exported item: the flow page gives a download path
instead of the item, and the path serves the item's bytes from the object store to the
flow's tenant only (tokens on, as the API)."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import FlowNotFound
from executor.core.objects import FileStore
from executor.types import Bytes
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import (
    Authenticator,
    Principal,
    Quotas,
    TokenFile,
    token_digest,
    tokens_json,
)
from scheduler.service.dashboard import Dashboard
from scheduler.service.downloads import ExportDownloads
from scheduler.service.flowstate import ExportStream, FlowRuntime
from tests.scheduler.fake_records import Lifecycle, Records

ITEM = Bytes(data=bytes(range(256)) * 12_000).SerializeToString()
KEY = "exports/f1/data/0.0"
TOKENS = {
    "alice": Principal("team-a", "user", Quotas()),
    "bob": Principal("team-b", "user", Quotas()),
}


class Service:
    """What the dashboard asks of the flow service for a flow page and a download."""

    def __init__(self, records: Records, objects: FileStore) -> None:
        self.records = records
        self.exports = ExportDownloads(Lifecycle(records, objects))

    def get(self, principal: Principal, flow_id: str) -> pb.FlowRecord:
        record = self.records.get(flow_id)
        if record is None or not principal.sees(record.tenant):
            raise FlowNotFound(flow_id, f"no flow {flow_id!r}")
        return record

    def catalogue(self, principal: Principal) -> dict[str, Any]:
        return {}


@pytest.fixture
def objects(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "objects")
    store.put(KEY, ITEM)
    return store


@pytest.fixture
def dashboard(tmp_path: Path, objects: FileStore) -> Iterator[str]:
    reference = {
        "typename": "dagyo.types.Bytes",
        "size": len(ITEM),
        "sha256": hashlib.sha256(ITEM).hexdigest(),
        "key": KEY,
    }
    record = pb.FlowRecord(
        id="f1",
        tenant="team-a",
        exports=[
            pb.Export(export="digest", value_json='{"text":"abc"}'),
            pb.Export(export="data", value_json=json.dumps({"@offloaded": reference})),
            pb.Export(export="data", value_json='{"data":"AAE="}'),
        ],
    )
    streams = {
        "data": ExportStream("q1", "dagyo.types.Bytes", "make.data"),
        "digest": ExportStream("q2", "dagyo.types.Text", "hash.digest"),
    }
    records = Records({"f1": record}, {"f1": FlowRuntime(exports=streams)})
    tokens = tmp_path / "tokens.json"
    tokens.write_text(tokens_json({token_digest(t): p for t, p in TOKENS.items()}))
    served = Dashboard(
        address="127.0.0.1:0",
        service=Service(records, objects),  # type: ignore[arg-type]
        authenticator=Authenticator(TokenFile(str(tokens))),
    )
    served.start()
    try:
        yield served.url.removeprefix("http://").rstrip("/")
    finally:
        served.stop()


def get(address: str, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(address, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_the_flow_page_links_an_offloaded_item_instead_of_holding_it(dashboard: str) -> None:
    status, _, body = get(dashboard, "/api/flows/f1", "alice")
    assert status == 200, body
    exports = json.loads(body)["exports"]
    assert exports[1]["download"] == "/api/flows/f1/exports/data/0"
    assert exports[1]["value"]["@offloaded"]["size"] == len(ITEM)
    assert "download" not in exports[0] and "download" not in exports[2]
    assert len(body) < 2000  # a reference, never the item's megabytes


def test_the_link_serves_the_items_bytes_from_the_store(dashboard: str) -> None:
    status, headers, body = get(dashboard, "/api/flows/f1/exports/data/0", "alice")
    assert status == 200, body
    assert body == ITEM
    assert headers["Content-Length"] == str(len(ITEM))
    assert headers["X-Dagyo-Sha256"] == hashlib.sha256(ITEM).hexdigest()
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''data-0.binpb"
    # An item kept inline downloads the same way, as its serialized bytes.
    status, _, body = get(dashboard, "/api/flows/f1/exports/data/1", "alice")
    assert (status, body) == (200, Bytes(data=b"\0\1").SerializeToString())


def test_another_tenant_cannot_fetch_the_flows_objects(dashboard: str) -> None:
    status, _, body = get(dashboard, "/api/flows/f1/exports/data/0", "bob")
    assert status == 404, body
    assert ITEM[:1000] not in body
    assert "no flow 'f1'" in json.loads(body)["error"]
    assert get(dashboard, "/api/flows/f1/exports/data/0", "mallory")[0] == 401


def test_a_missing_item_or_object_is_said_before_anything_is_sent(
    dashboard: str, objects: FileStore
) -> None:
    status, _, body = get(dashboard, "/api/flows/f1/exports/data/2", "alice")
    assert status == 400 and "keeps 2 items: no item 2" in json.loads(body)["error"], body
    status, _, body = get(dashboard, "/api/flows/f1/exports/nothing/0", "alice")
    assert status == 400 and "has no export 'nothing'" in json.loads(body)["error"], body
    objects.delete_prefix("exports/")
    status, _, body = get(dashboard, "/api/flows/f1/exports/data/0", "alice")
    assert status == 400 and "an offloaded exported item is gone" in json.loads(body)["error"]
