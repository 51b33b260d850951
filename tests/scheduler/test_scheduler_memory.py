"""Memory bounds of the real scheduler process (``dagyo scheduler``), measured as its RSS.

A Watch client that stops reading, and a panic with a 2.5 MB text, must not grow the
scheduler without limit nor make records that break every user's listing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from tests.commands import dagyo_at, free_address
from tests.scheduler.fake_executor import FLOW, WAIT_S, FakeExecutor, texts
from tests.waiting import eventually

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow

MB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class SchedulerProcess:
    def __init__(self, broker_url: str, catalogue: Path, tmp_path: Path, **env: str) -> None:
        self.address = free_address()
        environment = {
            **os.environ,
            "DAGYO_QUEUE": broker_url,
            "DAGYO_SCHEDULER": self.address,
            "DAGYO_STATE": str(tmp_path / "state.sqlite3"),
            "DAGYO_PROGDEFS": str(catalogue),
            "DAGYO_METRICS_PORT": "0",
            "DAGYO_UI": "off",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "scheduler"],
            env=environment,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "gRPC on" in line:
                break
        else:
            raise AssertionError(f"the scheduler exited {self.process.wait()}")
        self.channel = grpc.insecure_channel(self.address)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait(WAIT_S)

    def wait_ended(self, flow_id: str) -> pb.FlowRecord:
        return eventually(
            lambda: self.stub.Get(pb.GetRequest(flow_id=flow_id), timeout=WAIT_S),
            60,
            until=lambda record: record.state not in (pb.FLOW_STATE_PENDING, pb.FLOW_STATE_RUNNING),
            what=f"the end of flow {flow_id}",
        )


@pytest.fixture
def process(broker_url: str, catalogue: Path, tmp_path: Path) -> Iterator[SchedulerProcess]:
    started = SchedulerProcess(
        broker_url,
        catalogue,
        tmp_path,
        DAGYO_WATCHER_EVENTS="1000",
        DAGYO_EXPORT_CAP_BYTES="10000",
    )
    yield started
    started.close()


def test_a_watcher_that_stops_reading_does_not_grow_the_scheduler(
    process: SchedulerProcess, fake: FakeExecutor
) -> None:
    request = pb.SubmitRequest(flow_json=json.dumps(FLOW), source="fake.json")
    flow_id = process.stub.Submit(request, timeout=WAIT_S).flow_id
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    stalled = process.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=120)
    next(stalled)  # the progress event: the watch is subscribed; it reads no more
    before = rss(process.process.pid)
    frames, per_frame = 100, 2000
    item = "y" * 200
    fake.send(jobs["a"], "items", texts(), seq=0, end=True)
    fake.end_job(jobs["a"], {"items": 0})
    for seq in range(frames):
        fake.send(jobs["b"], "text", texts(*[item] * per_frame), seq=seq, end=seq == frames - 1)
    fake.end_job(jobs["b"], {"text": frames * per_frame})
    record = process.wait_ended(flow_id)
    grown = rss(process.process.pid) - before
    assert record.state == pb.FLOW_STATE_SUCCEEDED
    assert record.exports_dropped == frames * per_frame - len(record.exports)
    # 200 000 exports of 200 characters: buffered they would take well over 100 MB.
    print(f"scheduler RSS grew {grown / MB:.1f} MB")
    assert grown < 60 * MB
    with pytest.raises(grpc.RpcError) as caught:
        for _ in stalled:
            pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell more than 1000 events behind and was dropped" in caught.value.details()


def test_a_huge_panic_text_leaves_list_failures_status_and_watch_working(
    process: SchedulerProcess, fake: FakeExecutor
) -> None:
    request = pb.SubmitRequest(flow_json=json.dumps(FLOW), source="fake.json")
    flow_id = process.stub.Submit(request, timeout=WAIT_S).flow_id
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["b"])
    before = rss(process.process.pid)
    fake.panic(jobs["b"], "ValueError: " + "p" * 2_500_000, "Traceback\n" + "t" * 2_500_000)
    record = process.wait_ended(flow_id)
    assert record.state == pb.FLOW_STATE_FAILED
    assert record.ByteSize() < 100_000
    assert "characters not shown" in record.failure.error
    for args in (
        ("flow", "list"),
        ("failures",),
        ("flow", "status", flow_id),
        ("flow", "watch", flow_id),
    ):
        result = dagyo_at(process.address, *args)
        assert result.exit_code in (0, 1), (args, result.output[:500])
        assert len(result.output) < 100_000
    grown = rss(process.process.pid) - before
    print(f"scheduler RSS grew {grown / MB:.1f} MB")
    assert grown < 60 * MB
