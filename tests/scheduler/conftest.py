"""Fixtures of the scheduler tests: a catalogue, a scheduler, a fake executor, a fake scheduler.

Every test runs in its own catalogue (unique mailboxes) on the suite's vhost (the
``broker_url`` fixture of tests/conftest.py); the fake executor is in fake_executor.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.config import SchedulerSettings
from tests.scheduler.fake_executor import EMIT, RELAY, Client, FakeExecutor, mailboxes
from tests.scheduler.fake_scheduler import FakeScheduler

# --- a catalogue, a scheduler, an executor --------------------------------------------------


def write_progdef(folder: Path, data: dict[str, Any], version: str) -> None:
    folder.mkdir(parents=True)
    (folder / "progdef.json").write_text(json.dumps(data))
    (folder / "VERSION").write_text(version)


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """emit and relay, with versions (so mailboxes) no other test uses."""
    folder = tmp_path / "progdefs"
    version = uuid.uuid4().hex[:16]
    write_progdef(folder / "emit", EMIT, version)
    write_progdef(folder / "relay", RELAY, version)
    return folder


@pytest.fixture
def settings(broker_url: str, catalogue: Path, tmp_path: Path) -> SchedulerSettings:
    return SchedulerSettings(
        queue_url=broker_url,
        address="localhost:0",
        state_path=str(tmp_path / "state.sqlite3"),
        progdefs=catalogue,
        heartbeat_timeout_s=10.0,
        metrics_port=0,
    )


@pytest.fixture
def fake(broker_url: str, catalogue: Path) -> Iterator[FakeExecutor]:
    executor = FakeExecutor(broker_url, mailboxes(catalogue)).start()
    yield executor
    executor.close()


@pytest.fixture
def client(settings: SchedulerSettings) -> Iterator[Client]:
    started = Client(settings)
    yield started
    started.close()


@pytest.fixture
def fake_scheduler() -> Iterator[tuple[str, FakeScheduler]]:
    """A test double of the scheduler on a free port: (address, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fake = FakeScheduler()
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(fake, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    yield f"localhost:{port}", fake
    server.stop(0)
