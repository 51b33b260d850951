"""`dagyo failures`: exact output and exit status, past failures from a test double of the
fake_scheduler, `--follow` against the real RabbitMQ."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from typing import Any

import pika

from executor.core.constants import FAILURES_EXCHANGE, failure_key
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from tests.commands import dagyo, free_address
from tests.conftest import ROOT
from tests.scheduler.fake_scheduler import (
    BOOM,
    HELLO,
    PANIC_JSON,
    FakeScheduler,
    lines,
)

# --- failures ---------------------------------------------------------------------------------


PANIC_LINE = f"{BOOM} hi (explode) on explode-host-7: ValueError: panic-1"


def test_failures_one_per_line(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("failures", address=fake_scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{PANIC_LINE}\n", "")


def test_failures_of_one_flow(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    address, fake = fake_scheduler
    result = dagyo("failures", "--flow", HELLO, address=address)
    assert (result.exit_code, result.stdout) == (0, "")
    assert [r.flow_id for r in fake.requests] == [HELLO]


def test_failures_json(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("failures", "--json", address=fake_scheduler[0])
    assert result.exit_code == 0
    assert lines(result.stdout) == [PANIC_JSON]


class Following:
    """`dagyo failures --follow` as a subprocess, its output read line by line."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from scheduler.cli import main; main()",
                "failures",
                "--follow",
                "--broker",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines_read), daemon=True)
            for stream, lines_read in (
                (self.process.stdout, self.stdout),
                (self.process.stderr, self.stderr),
            )
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines_read: queue.Queue[str]) -> None:
        for line in stream:
            lines_read.put(line.rstrip("\n"))

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=20)
        for reader in self.readers:
            reader.join(5)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def publish(broker_url: str, report: FailureReport) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(FAILURES_EXCHANGE, exchange_type="topic", durable=True)
        channel.basic_publish(
            FAILURES_EXCHANGE,
            routing_key=failure_key(report.flow_id),
            body=report.SerializeToString(),
        )
    finally:
        connection.close()


def live_report(flow_id: str, error: str = "RuntimeError: live") -> FailureReport:
    return FailureReport(
        flow_id=flow_id,
        node="x",
        progdef="explode",
        executor="explode-e1",
        error=error,
        kind=FAILURE_KIND_PANIC,
    )


def test_failures_follow_prints_past_then_live_reports_of_its_flow(
    fake_scheduler: tuple[str, FakeScheduler], broker_url: str
) -> None:
    address, fake = fake_scheduler
    flow_id, other = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    past = live_report(flow_id, "RuntimeError: past")
    fake.past[flow_id] = [past]
    following = Following(
        "--flow", flow_id, env={"DAGYO_QUEUE": broker_url, "DAGYO_SCHEDULER": address}
    )
    try:
        # The past is read after the queue is bound, so what follows is not missed.
        assert following.stdout.get(timeout=20) == (
            f"{flow_id} x (explode) on explode-e1: RuntimeError: past"
        )
        publish(broker_url, live_report(other, "RuntimeError: another flow"))
        publish(broker_url, past)  # already shown: not repeated
        publish(broker_url, live_report(flow_id, "RuntimeError: live"))
        assert following.stdout.get(timeout=20) == (
            f"{flow_id} x (explode) on explode-e1: RuntimeError: live"
        )
        assert following.interrupt() == 0
        assert following.stdout.empty()
        assert following.stderr.empty()
    finally:
        following.close()


def test_failures_follow_without_a_scheduler_still_follows_the_broker(broker_url: str) -> None:
    flow_id = uuid.uuid4().hex[:12]
    address = free_address()
    following = Following("--json", env={"DAGYO_QUEUE": broker_url, "DAGYO_SCHEDULER": address})
    try:
        assert following.stderr.get(timeout=20).startswith(
            f"dagyo: cannot reach the scheduler at {address}"
        )
        assert following.stderr.get(timeout=5) == (
            "dagyo: past failures are unavailable; following new ones on the broker"
        )
        publish(broker_url, live_report(flow_id))
        while (report := json.loads(following.stdout.get(timeout=20)))["flow_id"] != flow_id:
            pass  # another test's (or run's) failure on the shared broker
        assert report == {
            "flow_id": flow_id,
            "node": "x",
            "progdef": "explode",
            "executor": "explode-e1",
            "error": "RuntimeError: live",
            "traceback": "",
            "kind": "panic",
            "time": 0.0,
        }
        assert following.interrupt() == 0
    finally:
        following.close()
