"""Running dagyo and ``python -m executor`` as a user does, for tests."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from click.testing import CliRunner, Result

from scheduler.cli import cli
from tests.conftest import ROOT
from tests.waiting import eventually

# Ports a test's server is given: below Linux's ephemeral range (32768-60999), which the
# kernel hands to every outgoing connection, so none of the suite's many broker clients can
# take the port between the test picking it and the server binding it.
TEST_PORTS = range(20000, 32000)


def free_port(host: str = "127.0.0.1") -> int:
    """A port of ``host`` nothing listens on now, outside the ephemeral range."""
    while True:
        port = random.choice(TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port


def free_address(host: str = "localhost") -> str:
    """``host:port`` with a port nothing listens on now, outside the ephemeral range."""
    return f"{host}:{free_port(host)}"


def dagyo(*args: str, address: str = "", env: dict[str, str] | None = None) -> Result:
    """The CLI, in this process, against ``address`` (by default one nothing answers on)."""
    environment = {"DAGYO_SCHEDULER": address or free_address(), **(env or {})}
    return CliRunner(env=environment).invoke(cli, list(args), catch_exceptions=False)


def run_dagyo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script as a process, with this environment and ``env``."""
    return subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def dagyo_at(address: str, *args: str) -> Result:
    """The CLI, in this process, against the scheduler at ``address``."""
    return CliRunner(env={"DAGYO_SCHEDULER": address}).invoke(
        cli, list(args), catch_exceptions=False
    )


def start_executor(progdef_dir: Path, **env: str) -> subprocess.Popen[str]:
    """``python -m executor PROGDEF_DIR``, its stderr piped (see :func:`read_until`)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "DAGYO_METRICS_PORT": "0", **env}
    environment.pop("DAGYO_JOBS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "executor", str(progdef_dir)],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@contextmanager
def dagyo_up(*args: str, env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``dagyo up ARGS`` as a process with exactly ``env``, yielded once its cluster is up;
    killed at the end unless the test stopped it."""
    up = subprocess.Popen(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "up", *args],
        env=dict(env),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(up, "the cluster is up", timeout_s=60)
        yield up
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def exported_texts(flow: Path, env: Mapping[str, str]) -> list[str]:
    """The texts ``dagyo flow submit FLOW --wait`` prints as exports; fails the test unless
    the flow succeeded."""
    submitted = run_dagyo("flow", "submit", str(flow), "--wait", env=dict(env))
    assert submitted.returncode == 0, submitted.stderr
    return [json.loads(line)["value"]["text"] for line in submitted.stdout.splitlines()]


def read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float = 30) -> str:
    """The first line of the process's stderr matching ``pattern``; fails the test if none."""
    assert process.stderr is not None
    return lines_until(process.stderr, pattern, [], timeout_s)


def lines_until(stream: IO[str], pattern: str, seen: list[str], timeout_s: float = 60) -> str:
    """The first line of ``stream`` matching ``pattern``, each line read added to ``seen``;
    fails the test if none comes within ``timeout_s``."""

    def next_line() -> str | None:
        line = stream.readline()
        assert line, f"no line matching {pattern!r} in:\n{''.join(seen)}"  # the end
        seen.append(line)
        return line if re.search(pattern, line) else None

    found = eventually(
        next_line,
        timeout_s,
        poll=0,
        what=lambda: f"a line matching {pattern!r} in:\n{''.join(seen)}",
    )
    assert found is not None
    return found


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of an HTTP GET of ``path`` on a loopback port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def dagyo_bare(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The console script as a process in ``cwd``, with no environment but PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "", "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"], "PYTHONPATH": str(ROOT)},
    )


# Installed as sitecustomize: every import of kubernetes fails, as on a core install.
BLOCKER = """
import sys

class _NoKubernetes:
    def find_spec(self, name, path=None, target=None):
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoKubernetes())
"""


def dagyo_without_kubernetes(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
        },
    )
