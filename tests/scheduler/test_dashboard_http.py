"""The dashboard's HTTP API on a real scheduler with tokens on: what a browser without a
good token, or a client speaking bad HTTP, gets back."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.scheduler.fake_executor import FLOW, FakeExecutor

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
def dashboard(settings: SchedulerSettings, tokens: Path, fake: FakeExecutor) -> Iterator[str]:
    """The address (host:port) of the dashboard of a scheduler that requires tokens."""
    scheduler = Scheduler(
        dataclasses.replace(settings, tokens_path=str(tokens), ui_address="127.0.0.1:0")
    )
    scheduler.start()
    assert scheduler.dashboard is not None
    yield scheduler.dashboard.url.removeprefix("http://").rstrip("/")
    scheduler.stop()


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
