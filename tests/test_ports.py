"""Health and metrics ports: a busy default port falls back to a free one, a busy asked-for
port is one line naming it and its variable (exit 2); DAGYO_METRICS_ADDR is the interface
they listen on (every one by default)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.constants import EXECUTOR_METRICS_PORT
from scheduler.constants import SCHEDULER_METRICS_PORT
from tests.commands import dagyo, free_address, free_port, read_until
from tests.conftest import ROOT
from tests.listening import listening_addresses

GREET = ROOT / "progdefs" / "greet"


@pytest.fixture
def busy_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port held by a listening socket: the given one (already held: fine) or a free one."""
    wanted = getattr(request, "param", 0)
    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", wanted))
        holder.listen()
    except OSError:  # someone else holds it already: it is busy all the same
        pass
    try:
        yield wanted or holder.getsockname()[1]
    finally:
        holder.close()


def environment(broker_url: str, **env: str) -> dict[str, str]:
    unset = ("DAGYO_METRICS_PORT", "DAGYO_METRICS_ADDR")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return {**environ, "PYTHONPATH": str(ROOT), "DAGYO_QUEUE": broker_url, **env}


def executor(broker_url: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    mailbox = f"dagyo.test.ports.{uuid.uuid4().hex[:8]}"
    return subprocess.Popen(
        [sys.executable, "-m", "executor", str(GREET)],
        env=environment(broker_url, DAGYO_JOBS=mailbox, **env),
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def scheduler(broker_url: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "scheduler", "--no-ui"],
        env=environment(
            broker_url,
            DAGYO_SCHEDULER=free_address(),
            DAGYO_STATE=":memory:",
            DAGYO_PROGDEFS=str(ROOT / "progdefs"),
            **env,
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def stopped(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("busy_port", [EXECUTOR_METRICS_PORT], indirect=True)
def test_an_executor_takes_a_free_port_when_the_default_is_busy(
    broker_url: str, tmp_path: Path, busy_port: int
) -> None:
    process = executor(broker_url, tmp_path)
    try:
        ready = read_until(process, "ready")
        port = int(re.search(r"health on port (\d+)", ready).group(1))  # type: ignore[union-attr]
        assert port != busy_port
    finally:
        assert stopped(process) == 0


@pytest.mark.parametrize("busy_port", [SCHEDULER_METRICS_PORT], indirect=True)
def test_a_scheduler_takes_a_free_port_when_the_default_is_busy(
    broker_url: str, tmp_path: Path, busy_port: int
) -> None:
    process = scheduler(broker_url, tmp_path)
    try:
        ready = read_until(process, "dagyo scheduler: gRPC on")
        port = int(re.search(r"metrics on :(\d+)", ready).group(1))  # type: ignore[union-attr]
        assert port != busy_port
    finally:
        assert stopped(process) == 0


def test_a_busy_asked_for_port_is_one_line_and_exit_2(
    broker_url: str, tmp_path: Path, busy_port: int
) -> None:
    fix = "set DAGYO_METRICS_PORT to a free port, or to 0 for any free one"
    for start, prefix in ((executor, "executor"), (scheduler, "dagyo")):
        process = start(broker_url, tmp_path, DAGYO_METRICS_PORT=str(busy_port))
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2
        assert stderr.splitlines()[-1] == (
            f"{prefix}: port {busy_port} is already in use (DAGYO_METRICS_PORT={busy_port}): {fix}"
        )
        assert "Traceback" not in stderr


def _health_port(process: subprocess.Popen[str]) -> int:
    ready = read_until(process, "ready")
    return int(re.search(r"health on port (\d+)", ready).group(1))  # type: ignore[union-attr]


def _metrics_port(process: subprocess.Popen[str]) -> int:
    ready = read_until(process, "dagyo scheduler: gRPC on")
    return int(re.search(r"metrics on :(\d+)", ready).group(1))  # type: ignore[union-attr]


def _on(pid: int, port: int) -> set[str]:
    return {address for address, listening in listening_addresses(pid) if listening == port}


def _status(host: str, port: int, path: str) -> int:
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


@pytest.mark.parametrize(
    ("address", "bound"), [(None, "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::1", "::1")]
)
def test_the_metrics_address_is_the_interface_health_and_metrics_listen_on(
    broker_url: str, tmp_path: Path, address: str | None, bound: str
) -> None:
    env = {} if address is None else {"DAGYO_METRICS_ADDR": address}
    process = executor(broker_url, tmp_path, DAGYO_METRICS_PORT="0", **env)
    try:
        port = _health_port(process)
        assert _on(process.pid, port) == {bound}
        assert _status("::1" if bound == "::1" else "127.0.0.1", port, "/healthz") == 200
    finally:
        assert stopped(process) == 0
    port = free_port()
    process = scheduler(broker_url, tmp_path, DAGYO_METRICS_PORT=str(port), **env)
    try:
        assert _metrics_port(process) == port
        assert _on(process.pid, port) == {bound}
        assert _status("::1" if bound == "::1" else "127.0.0.1", port, "/metrics") == 200
    finally:
        assert stopped(process) == 0


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:9100", "give the host alone; the port is DAGYO_METRICS_PORT"),
        ("not a host", "is not a host name or IP address"),
        # TEST-NET-1 (RFC 5737): an address no interface of this machine has.
        ("192.0.2.1", "no interface of this machine has that address"),
    ],
)
def test_a_bad_metrics_address_is_one_line_and_exit_2(
    broker_url: str, tmp_path: Path, address: str, problem: str
) -> None:
    for start, prefix in ((executor, "executor"), (scheduler, "dagyo")):
        port = str(free_port())  # the scheduler serves nothing on port 0
        process = start(broker_url, tmp_path, DAGYO_METRICS_ADDR=address, DAGYO_METRICS_PORT=port)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, stderr
        last = stderr.splitlines()[-1]
        assert last.startswith(f"{prefix}: DAGYO_METRICS_ADDR={address!r}"), last
        assert problem in last
        assert "Traceback" not in stderr


VARIABLES = (
    "DAGYO_QUEUE",
    "DAGYO_METRICS_PORT",
    "DAGYO_METRICS_ADDR",
    "DAGYO_STATE",
    "DAGYO_SCHEDULER",
    "DAGYO_UI",
)


@pytest.mark.parametrize("command", ["up", "scheduler"])
def test_the_help_of_a_server_lists_the_variables_it_reads(command: str) -> None:
    result = dagyo(command, "--help")
    assert result.exit_code == 0
    for variable in VARIABLES:
        assert variable in result.stdout


def test_the_executors_help_lists_the_variables_it_reads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executor", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0
    for variable in (
        "DAGYO_QUEUE",
        "DAGYO_JOBS",
        "DAGYO_METRICS_PORT",
        "DAGYO_METRICS_ADDR",
        "DAGYO_MAX_JOBS",
    ):
        assert variable in done.stderr
