"""The executor under test: any program, started by ``--executor-command``.

It is driven only through its process (its command line, its environment, SIGTERM, its
exit status) and the wire. It serves a progdef of tests/conformance/progdefs/RUNTIME/,
pulls a mailbox of the suite's own (``dagyo.mailbox.{progdef}.{version}`` with a fresh
version, so the version it serves is the one its mailbox is named for), and counts as
ready at its first heartbeat naming that mailbox.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.wire import WAIT_S, Wire
from tests.conftest import ROOT
from tests.waiting import eventually

HERE = Path(__file__).resolve().parent
PROGDEFS = HERE / "progdefs"
DEFAULT_COMMAND = "python -m executor {progdef}"
# Short, so heartbeats (and the readiness they tell) come quickly.
HEARTBEAT_INTERVAL_S = "0.3"


@dataclass(frozen=True)
class ExecutorCommand:
    """How to start the executor under test, and which progdefs it runs."""

    words: list[str]
    runtime: str

    @classmethod
    def from_config(cls, config: pytest.Config) -> ExecutorCommand:
        command = config.getoption("executor_command", default="") or DEFAULT_COMMAND
        words = shlex.split(command)
        if not any("{progdef}" in word for word in words):
            raise pytest.UsageError(
                f"--executor-command {command!r} has no {{progdef}}: put it where the "
                "progdef folder goes, e.g. 'node sdks/js/bin/dagyo-executor.js {progdef}'"
            )
        if words[0] == "python":  # this interpreter, with the suite's packages
            words[0] = sys.executable
        runtime = config.getoption("runtime", default="") or infer_runtime(words)
        if not (PROGDEFS / runtime).is_dir():
            raise pytest.UsageError(
                f"no conformance progdefs for runtime {runtime!r}: write them in "
                f"tests/conformance/progdefs/{runtime}/ as tests/conformance/README.md says"
            )
        return cls(words, runtime)

    def argv(self, progdef_dir: Path) -> list[str]:
        return [word.replace("{progdef}", str(progdef_dir)) for word in self.words]


def infer_runtime(words: list[str]) -> str:
    """node for a node program or a .js file, else python."""
    if Path(words[0]).name.startswith("node") or any(w.endswith((".js", ".mjs")) for w in words):
        return "node"
    return "python"


@dataclass
class RunningExecutor:
    """One executor process serving one progdef."""

    process: subprocess.Popen[bytes]
    progdef: str
    version: str
    mailbox: str
    executor_id: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM (a drain), then the exit status; killed when it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the executor did not exit on SIGTERM:\n{self.output()}"
            ) from None


def start_executor(
    command: ExecutorCommand,
    wire: Wire,
    progdef: str,
    log: Path,
    **env: str,
) -> RunningExecutor:
    """Start the executor of tests/conformance/progdefs/RUNTIME/``progdef`` on ``wire``'s
    broker, with ``env`` (DAGYO_MAX_JOBS, …) over the suite's settings."""
    version = uuid.uuid4().hex[:16]
    mailbox = wire.declare_mailbox(f"dagyo.mailbox.{progdef}.{version}")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "DAGYO_QUEUE": wire.url,
        "DAGYO_JOBS": mailbox,
        "DAGYO_HEARTBEAT_INTERVAL_S": HEARTBEAT_INTERVAL_S,
        "DAGYO_METRICS_PORT": "0",
        "DAGYO_METRICS_ADDR": "127.0.0.1",
        # A job a failed case left running holds the module's last drain no longer.
        "DAGYO_DRAIN_GRACE_S": "5",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            command.argv(PROGDEFS / command.runtime / progdef),
            env=environment,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> str | None:
        if process.poll() is not None:
            raise AssertionError(
                f"the executor exited {process.returncode} before its first heartbeat:\n"
                + log.read_text(errors="replace")
            )
        beats = [b for b in wire.events("heartbeat") if b.mailbox == mailbox]
        return beats[0].executor if beats else None

    try:
        executor_id = eventually(ready, WAIT_S, what=f"a heartbeat naming mailbox {mailbox}")
    except AssertionError:
        process.kill()
        process.wait()
        raise
    return RunningExecutor(process, progdef, version, mailbox, executor_id, log)
