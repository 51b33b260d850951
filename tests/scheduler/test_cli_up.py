"""`dagyo up` and `dagyo scheduler`: processes started, restarted and stopped, exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.commands import dagyo, free_address
from tests.conftest import ROOT
from tests.waiting import eventually

# --- up -----------------------------------------------------------------------------------------

# `dagyo up` with a stand-in for the in-process scheduler service, so this tests what `up`
# itself does: the executor processes on the real broker, readiness, and the stop.
UP_WITH_A_STUB_SCHEDULER = """
import sys, types
service = types.ModuleType("scheduler.service.server")
class Scheduler:
    dashboard = None
    failed = None
    def __init__(self, settings, tracing=None):
        self.address = settings.address
    def start(self):
        print("stub scheduler started", file=sys.stderr, flush=True)
    def stop(self):
        print("stub scheduler stopped", file=sys.stderr, flush=True)
service.Scheduler = Scheduler
sys.modules["scheduler.service.server"] = service
from scheduler.cli import main
main()
"""


@pytest.fixture
def catalogue(tmp_path: Path, broker_url: str) -> Iterator[Path]:
    """Copies of two sample progdefs with versions of their own, so the executors of these
    tests pull mailboxes no other test publishes to; the mailboxes are deleted after."""
    from executor.core.progdef import load_catalogue
    from scheduler.local_cluster import private_catalogue
    from tests.conftest import PROGDEFS

    private_catalogue(PROGDEFS, tmp_path, ("greet", "void_sink"), tag="test")
    yield tmp_path
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for progdef in load_catalogue(tmp_path).values():
            channel.queue_delete(progdef.mailbox)
    finally:
        connection.close()


class Up:
    """`dagyo up` as a subprocess; ``lines`` are its stdout lines up to the scheduler's."""

    def __init__(self, broker_url: str, catalogue: Path, address: str) -> None:
        env = {**os.environ, "DAGYO_QUEUE": broker_url, "DAGYO_STATE": ":memory:"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                UP_WITH_A_STUB_SCHEDULER,
                "up",
                "--listen",
                address,
                "--progdefs",
                str(catalogue),
            ],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("scheduler: "):
                break

    def pids(self) -> dict[str, int]:
        return {
            line.split()[1].rstrip(":"): int(line.split("pid ")[1].split(",")[0])
            for line in self.lines
            if line.startswith("executor ")
        }

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=120)
        return self.process.returncode, stderr

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_one_executor_per_progdef_and_stops_cleanly(
    broker_url: str, catalogue: Path, signum: int
) -> None:
    from executor.core.progdef import load_catalogue

    address = free_address()
    up = Up(broker_url, catalogue, address)
    try:
        progdefs = load_catalogue(catalogue)
        assert up.lines[-1] == f"scheduler: listening on {address}"
        pids = up.pids()
        assert sorted(pids) == ["greet", "void_sink"]
        for name, progdef in progdefs.items():
            assert f"executor {name}: pid {pids[name]}, mailbox {progdef.mailbox}" in up.lines
        assert all(alive(pid) for pid in pids.values())
        status, stderr = up.stop(signum)
        assert status == 0, stderr
        assert "stub scheduler stopped" in stderr
        assert stderr.rstrip().endswith("dagyo: stopped")
        assert not any(alive(pid) for pid in pids.values())
    finally:
        up.close()


def wait_for_consumer(broker_url: str, mailbox: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        eventually(
            lambda: connection.channel().queue_declare(mailbox, passive=True).method.consumer_count,
            60,
            what=f"a consumer on {mailbox}",
        )
    finally:
        connection.close()


def test_up_starts_a_dead_executor_again_and_keeps_the_rest(
    broker_url: str, catalogue: Path
) -> None:
    from executor.core.progdef import load_catalogue

    up = Up(broker_url, catalogue, free_address())
    try:
        pids = up.pids()
        os.kill(pids["greet"], signal.SIGKILL)
        assert up.process.stdout is not None
        again = up.process.stdout.readline()
        assert again.startswith("executor greet: pid "), again
        new_pid = int(again.split("pid ")[1].split(",")[0])
        assert new_pid != pids["greet"] and alive(new_pid) and alive(pids["void_sink"])
        wait_for_consumer(broker_url, load_catalogue(catalogue)["greet"].mailbox)
        status, stderr = up.stop()
        assert status == 0, stderr
        assert (
            f"dagyo: executor greet (pid {pids['greet']}) exited with status -9; "
            "starting it again in 1 s"
        ) in stderr.splitlines()
        assert not any(alive(pid) for pid in (new_pid, pids["void_sink"]))
    finally:
        up.close()


# --- the real scheduler service -----------------------------------------------------------------


def test_dagyo_scheduler_serves_until_sigterm_then_exits_0(broker_url: str) -> None:
    address = free_address()
    env = {**os.environ, "DAGYO_QUEUE": broker_url, "DAGYO_METRICS_PORT": "0"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from scheduler.cli import main; main()",
            "scheduler",
            "--listen",
            address,
            "--state",
            ":memory:",
        ],
        cwd=ROOT,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
    )
    try:
        listed = eventually(  # the scheduler takes a moment to listen
            lambda: dagyo("flow", "list", address=address),
            until=lambda listed: listed.exit_code != 3,
            what="the scheduler listening",
        )
        assert (listed.exit_code, listed.stdout) == (0, "")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
