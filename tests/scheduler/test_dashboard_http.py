"""The dashboard's HTTP API on a real scheduler with tokens on: what a browser without a
good token, or a client speaking bad HTTP, gets back; what each tenant sees of the
catalogue; how many live streams it holds."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.client.api import SchedulerClient
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import EMIT, FLOW, RELAY, WAIT_S, FakeExecutor
from tests.waiting import eventually

TOKENS = {
    "alice": Principal("team-a", "user", Quotas()),
    "bob": Principal("team-b", "user", Quotas()),
}


def write_tokens(path: Path, tokens: dict[str, Principal]) -> None:
    path.write_text(tokens_json({token_digest(t): p for t, p in tokens.items()}))
    stat = path.stat()  # a rewrite within one clock tick must still look changed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    write_tokens(path, TOKENS)
    return path


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """emit and relay, and ``private``: a relay only team-b may use."""
    folder = tmp_path / "progdefs"
    version = uuid.uuid4().hex[:16]
    write_progdef(folder / "emit", EMIT, version)
    write_progdef(folder / "relay", RELAY, version)
    private = {
        **RELAY,
        "name": "private",
        "description": "Team b's secret relay.",
        "tenants": ["team-b"],
    }
    write_progdef(folder / "private", private, version)
    return folder


@pytest.fixture
def scheduler(settings: SchedulerSettings, tokens: Path, fake: FakeExecutor) -> Iterator[Scheduler]:
    """A scheduler that requires tokens, with its dashboard."""
    started = Scheduler(
        dataclasses.replace(settings, tokens_path=str(tokens), ui_address="127.0.0.1:0")
    )
    started.start()
    yield started
    started.stop()


@pytest.fixture
def dashboard(scheduler: Scheduler) -> str:
    """The address (host:port) of the scheduler's dashboard."""
    assert scheduler.dashboard is not None
    return scheduler.dashboard.url.removeprefix("http://").rstrip("/")


def call(
    address: str, method: str, path: str, token: str = "", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(address, timeout=30)
    try:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        connection.request(method, path, headers=sent)
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body else None
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/api/flows", "/api/failures", "/api/flows/f1"])
def test_a_missing_forged_or_revoked_token_is_401(dashboard: str, tokens: Path, path: str) -> None:
    assert call(dashboard, "GET", path, "alice")[0] in (200, 404)
    for token in ("", "mallory"):
        status, answer = call(dashboard, "GET", path, token)
        assert status == 401, answer
        assert "token" in answer["error"]
    write_tokens(tokens, {"bob": TOKENS["bob"]})
    status, answer = call(dashboard, "GET", path, "alice")
    assert status == 401 and "revoked" in answer["error"], answer


def test_a_cancel_with_a_malformed_length_is_400_not_a_traceback(
    dashboard: str, capfd: pytest.CaptureFixture[str]
) -> None:
    status, answer = call(
        dashboard, "POST", "/api/flows/f1/cancel", "alice", {"Content-Length": "abc"}
    )
    assert status == 400 and "Content-Length" in answer["error"], answer
    assert call(dashboard, "GET", "/api/flows", "alice")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_another_tenants_flow_answers_404_as_one_that_does_not_exist(
    settings: SchedulerSettings, tokens: Path, fake: FakeExecutor
) -> None:
    scheduler = Scheduler(
        dataclasses.replace(settings, tokens_path=str(tokens), ui_address="127.0.0.1:0")
    )
    scheduler.start()
    try:
        assert scheduler.dashboard is not None
        address = scheduler.dashboard.url.removeprefix("http://").rstrip("/")
        flow_id = scheduler.service.submit(TOKENS["alice"], json.dumps(FLOW))
        status, answer = call(address, "GET", f"/api/flows/{flow_id}", "alice")
        assert status == 200 and answer["id"] == flow_id, answer
        for method, path in (
            ("GET", f"/api/flows/{flow_id}"),
            ("POST", f"/api/flows/{flow_id}/cancel"),
        ):
            status, answer = call(address, method, path, "bob")
            assert (status, answer["error"]) == (
                404,
                f"no flow {flow_id!r} on this scheduler: `dagyo flow list` shows the flows it "
                "knows",
            )
        assert [flow["id"] for flow in call(address, "GET", "/api/flows", "alice")[1]] == [flow_id]
        assert call(address, "GET", "/api/flows", "bob") == (200, [])
    finally:
        scheduler.stop()


def test_a_progdef_limited_to_a_tenant_is_shown_to_that_tenant_only(
    scheduler: Scheduler, dashboard: str
) -> None:
    status, answer = call(dashboard, "GET", "/api/catalogue")
    assert status == 401, answer

    def names(token: str) -> set[str]:
        status, answer = call(dashboard, "GET", "/api/catalogue", token)
        assert status == 200, answer
        return {progdef["name"] for progdef in answer["progdefs"]}

    assert names("alice") == {"emit", "relay"}
    assert names("bob") == {"emit", "relay", "private"}
    for token, seen in (("alice", {"emit", "relay"}), ("bob", {"emit", "relay", "private"})):
        with SchedulerClient(scheduler.address, token=token, call_timeout_s=20) as client:
            assert {v.progdef for v in client.versions()} == seen
            assert {p.name for p in client.catalogue().progdefs} == seen


class Stream:
    """An open ``/api/events`` stream, from a source address of its own (one client)."""

    def __init__(self, address: str, token: str, source: str = "127.0.0.1") -> None:
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(
            host, int(port), timeout=WAIT_S, source_address=(source, 0)
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connection.request("GET", "/api/events", headers=headers)
        self.answer = self.connection.getresponse()
        self.status = self.answer.status

    def close(self) -> None:
        self.answer.close()  # it holds the socket too
        self.connection.close()


def test_an_event_stream_without_a_token_is_401_at_once(dashboard: str) -> None:
    for token in ("", "mallory"):
        stream = Stream(dashboard, token)
        try:
            assert stream.status == 401
            assert "token" in json.loads(stream.answer.read())["error"]
        finally:
            stream.close()


def test_event_streams_are_bounded_per_client_and_per_tenant(
    scheduler: Scheduler, dashboard: str
) -> None:
    assert scheduler.dashboard is not None
    scheduler.dashboard.live.per_client, scheduler.dashboard.live.per_tenant = 2, 3
    streams = [Stream(dashboard, "alice"), Stream(dashboard, "alice")]
    try:
        assert [s.status for s in streams] == [200, 200]
        refused = Stream(dashboard, "alice")
        assert refused.status == 429 and refused.answer.getheader("Retry-After")
        assert "2 live views from this client" in json.loads(refused.answer.read())["error"]
        streams.append(Stream(dashboard, "alice", source="127.0.0.2"))
        assert streams[-1].status == 200
        refused = Stream(dashboard, "alice", source="127.0.0.3")
        assert refused.status == 429
        assert "3 live views of tenant team-a" in json.loads(refused.answer.read())["error"]
        streams.append(Stream(dashboard, "bob", source="127.0.0.3"))
        assert streams[-1].status == 200  # another tenant is not locked out
    finally:
        for stream in streams:
            stream.close()

    def opens() -> bool:
        stream = Stream(dashboard, "alice")
        stream.close()
        return stream.status == 200

    eventually(opens, what="a slot given back once its stream closed")


def test_an_idle_event_stream_closes(scheduler: Scheduler, dashboard: str) -> None:
    assert scheduler.dashboard is not None
    scheduler.dashboard.live.idle_s = 1.0
    stream = Stream(dashboard, "alice")
    try:
        assert stream.status == 200
        stream.answer.read()  # returns at the end of the stream: it closed on its own
    finally:
        stream.close()
