"""A flow record stays readable: what it carries is bounded below the message limit, and a
flow whose record could not be read back is refused at submit."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.config import SchedulerSettings
from tests.commands import dagyo_at
from tests.scheduler.fake_executor import FLOW, Client, FakeExecutor, texts
from tests.waiting import eventually

LIMIT = 65536


@pytest.fixture
def small(settings: SchedulerSettings) -> Iterator[Client]:
    """A scheduler whose messages are at most 64 KiB (its export cap is 1 MiB: more)."""
    started = Client(dataclasses.replace(settings, max_message_bytes=LIMIT))
    yield started
    started.close()


def wide(nodes: int) -> dict:
    names = [f"e{i}" for i in range(nodes)]
    return {
        "name": "wide",
        "nodes": {n: {"progdef": "emit"} for n in names},
        "consts": [{"to": f"{n}.n", "values": [1]} for n in names],
        "exports": {n: f"{n}.items" for n in names},
    }


def test_a_flow_whose_record_could_not_be_read_back_is_refused_at_submit(
    small: Client, tmp_path: Path
) -> None:
    flow = wide(400)
    assert len(json.dumps(flow)) < LIMIT  # the request itself fits
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(flow))
    result = dagyo_at(small.scheduler.address, "flow", "submit", str(path))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "its record" in line and f"the {LIMIT} bytes" in line, line
    assert "DAGYO_MAX_MESSAGE_BYTES" in line and "make the flow smaller" in line


def test_a_record_whose_exports_fill_the_cap_can_still_be_read(
    small: Client, fake: FakeExecutor
) -> None:
    flow_id = small.submit(FLOW)
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    fake.send(jobs["a"], "items", texts("x"), seq=0, end=True)
    fake.end_job(jobs["a"], {"items": 1})
    frames = 10
    for seq in range(frames):  # 100 KB of exports, more than a message holds
        fake.send(jobs["b"], "text", texts(*["y" * 1000] * 10), seq=seq, end=seq == frames - 1)
    fake.end_job(jobs["b"], {"text": 10 * frames})
    eventually(lambda: small.get(flow_id).state == pb.FLOW_STATE_SUCCEEDED, what="the end")
    record = small.get(flow_id)
    assert record.exports_truncated and record.exports
    assert record.ByteSize() <= LIMIT
    status = dagyo_at(small.scheduler.address, "flow", "status", flow_id)
    assert status.exit_code == 0, status.output
