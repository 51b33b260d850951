"""max_running_flows holds under concurrent submits: the check and the count are one step."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from executor.core.errors import SchedulerRefused
from scheduler.client.api import SchedulerClient
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.scheduler.fake_executor import FLOW, FakeExecutor

SUBMITS = 30
QUOTA = 2


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_submits_never_pass_max_running_flows(
    settings: SchedulerSettings, fake: FakeExecutor, tmp_path: Path, attempt: int
) -> None:
    tokens = tmp_path / "tokens.json"
    principal = Principal("team-a", "user", Quotas(max_running_flows=QUOTA))
    tokens.write_text(tokens_json({token_digest("alice"): principal}))
    scheduler = Scheduler(dataclasses.replace(settings, tokens_path=str(tokens)))
    scheduler.start()
    accepted: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(SUBMITS)

    def submit() -> None:
        with SchedulerClient(scheduler.address, token="alice", call_timeout_s=60) as client:
            client.list()  # connected before the barrier, so the submits race
            start.wait()
            try:
                accepted.append(client.submit(json.dumps(FLOW)))
            except SchedulerRefused as e:
                refused.append(str(e))

    try:
        threads = [threading.Thread(target=submit) for _ in range(SUBMITS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(accepted) == QUOTA, (len(accepted), refused[:1])
        assert len(refused) == SUBMITS - QUOTA
        assert all(f"quota max_running_flows is {QUOTA}" in line for line in refused)
    finally:
        scheduler.stop()
