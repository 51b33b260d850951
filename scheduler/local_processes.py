"""The executor processes of a local cluster: what they inherit, how they start, when ready,
and how they are started again after an exit and stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from executor.core.constants import ENV_JOBS, ENV_METRICS_ADDR, ENV_METRICS_PORT, ENV_QUEUE
from executor.core.errors import DagyoError, ProgdefInvalid
from executor.core.progdef import Progdef, load_progdef
from executor.core.version import VERSION_FILE
from scheduler.constants import LOOPBACK_METRICS_HOST
from scheduler.tls import ENV_TLS_CERT, ENV_TLS_CLIENT_CA, ENV_TLS_KEY, ENV_TOKEN, ENV_TOKENS

log = logging.getLogger("dagyo.local")

# What an executor gets of this process's environment besides its progdef's secrets:
# the DAGYO_* settings and what a Python process needs to run.
PASSED_PREFIXES = ("DAGYO_", "PYTHON", "LC_")
# ...but not the scheduler's own credentials (its key, its token file) nor a caller's token.
WITHHELD = frozenset([ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CLIENT_CA, ENV_TOKENS, ENV_TOKEN])
PASSED = frozenset(
    [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "SYSTEMROOT",
    ]
)


def private_catalogue(source: Path, target: Path, names: Iterable[str], *, tag: str) -> Path:
    """Copy progdefs from ``source`` into ``target`` under a version of their own.

    Each copy gets a ``VERSION`` file naming ``tag`` plus a fresh random part, so its
    mailbox is its own: a second cluster (a test, a benchmark) on the same broker neither
    takes nor loses another's jobs.

    Returns:
        ``target``, a catalogue folder.
    """
    version = f"{tag}-{uuid.uuid4().hex[:12]}"
    for name in names:
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        (target / name / VERSION_FILE).write_text(version + "\n")
    return target


def progdef_environment(
    progdef: Progdef, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What an executor of ``progdef`` gets of ``environ`` (this process's by default).

    The ``DAGYO_*`` settings but the scheduler's credentials (``WITHHELD``), what a process
    needs (PATH, HOME, LANG, PYTHON*…), the progdef's ``env`` and its declared ``secrets``;
    no other progdef's secrets.
    """
    environ = os.environ if environ is None else environ
    environment = {
        name: value
        for name, value in environ.items()
        if (name in PASSED or name.startswith(PASSED_PREFIXES)) and name not in WITHHELD
    }
    environment.update(progdef.env)
    environment.update({n: environ[n] for n in progdef.secrets if n in environ})
    return environment


def node_sdk() -> Path:
    """The JavaScript executor SDK's folder (sdks/js of this source tree)."""
    return Path(__file__).resolve().parents[1] / "sdks" / "js"


def executor_command(progdef: Progdef) -> list[str]:
    """The command that runs an executor of ``progdef``: Python's, or Node.js's for
    ``"runtime": "node"``."""
    if progdef.runtime == "node":
        node = shutil.which("node") or "node"
        return [node, str(node_sdk() / "bin" / "dagyo-executor.js"), str(progdef.directory)]
    return [sys.executable, "-m", "executor", str(progdef.directory)]


def check_node_runtime(progdefs: Iterable[Progdef]) -> None:
    """Fail in one line, saying what to run, when a node progdef cannot start here.

    Raises:
        DagyoError: when Node.js is not on PATH, or the SDK's packages are not installed.
    """
    names = sorted(p.name for p in progdefs if p.runtime == "node")
    if not names:
        return
    which = f"progdef {', '.join(names)} {'runs' if len(names) == 1 else 'run'} on Node.js"
    if shutil.which("node") is None:
        raise DagyoError(f"{which}, which is not on PATH: install Node.js 20 or newer")
    sdk = node_sdk()
    if not (sdk / "node_modules").is_dir() or not (sdk / "dist" / "main.js").is_file():
        raise DagyoError(f"{which}, and its SDK is not installed: run `npm ci` in {sdk}")


def own_process_group() -> None:
    """In an executor before exec: Ctrl-C reaches only our process, which sends SIGTERM; and
    on Linux the executor gets SIGTERM (drains) should our process die without stopping it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def mailbox_consumers(connection: Any, mailbox: str) -> int:
    import pika.exceptions

    channel = connection.channel()
    try:
        return int(channel.queue_declare(mailbox, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:  # 404: no executor declared it yet
        return 0
    finally:
        if channel.is_open:
            channel.close()


# On stop, executors get their drain grace plus this before they are killed.
STOP_MARGIN_S = 15.0
# An executor that exits is started again after this, doubled at each exit up to
# RESTART_MAX_S; one that ran RESTART_RESET_S before it exited starts over at the first.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_S = 60.0


class ExecutorProcesses:
    """The executor processes of a local cluster: started, restarted after exits, stopped.

    Args:
        queue_url: the broker every executor uses (its ``DAGYO_QUEUE``).
        extra_env: added to each executor's environment.
        log_dir: when set, each executor runs in this folder and writes its output to
            ``executor-<progdef>.log`` there, instead of inheriting stdout and stderr.

    Attributes:
        processes: (progdef, process) of each executor, in the order started.
    """

    def __init__(
        self, *, queue_url: str, extra_env: Mapping[str, str], log_dir: Path | None
    ) -> None:
        self._queue_url = queue_url
        self._extra_env = extra_env
        self._log_dir = log_dir
        self.processes: list[tuple[Progdef, subprocess.Popen[bytes]]] = []
        # By index in processes: when it started, its last restart delay, when it is due.
        self._started: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self._due: dict[int, float] = {}

    def by_name(self) -> dict[str, list[subprocess.Popen[bytes]]]:
        """The executor processes started so far, by progdef name."""
        executors: dict[str, list[subprocess.Popen[bytes]]] = {}
        for progdef, process in self.processes:
            executors.setdefault(progdef.name, []).append(process)
        return executors

    def start(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        """Start one more executor process for ``progdef``."""
        self._started[len(self.processes)] = time.monotonic()
        process = self._spawn(progdef)
        self.processes.append((progdef, process))
        return process

    def _spawn(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        command = executor_command(progdef)
        if self._log_dir is None:
            return subprocess.Popen(
                command,
                env=self._executor_environment(progdef),
                process_group=0,
                preexec_fn=own_process_group,
            )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_dir / f"executor-{progdef.name}.log", "ab") as log_file:
            return subprocess.Popen(
                command,
                env=self._executor_environment(progdef),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._log_dir,
                process_group=0,
                preexec_fn=own_process_group,
            )

    def log(self, name: str) -> str:
        """What the executors of progdef ``name`` wrote so far (with ``log_dir`` set)."""
        if self._log_dir is None:
            raise DagyoError("the executors' output is not kept: give the cluster a log_dir")
        path = self._log_dir / f"executor-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def supervise(
        self,
        *,
        on_exit: Callable[[Progdef, subprocess.Popen[bytes], float], None] | None = None,
        on_start: Callable[[Progdef, subprocess.Popen[bytes]], None] | None = None,
    ) -> None:
        """Start again, after its backoff, each executor that exited; call it now and then.

        Args:
            on_exit: called once for each exit, with the executor and the delay before it
                is started again; by default a warning is logged.
            on_start: called with each executor started again.
        """
        now = time.monotonic()
        for index, (progdef, process) in enumerate(self.processes):
            if process.poll() is None:
                continue
            if index not in self._due:
                ran_s = now - self._started.get(index, now)
                last = self._delays.get(index)
                delay = (
                    RESTART_FIRST_S
                    if last is None or ran_s >= RESTART_RESET_S
                    else min(last * 2, RESTART_MAX_S)
                )
                self._delays[index] = delay
                self._due[index] = now + delay
                (on_exit or _log_exit)(progdef, process, delay)
            elif now >= self._due[index]:
                del self._due[index]
                self._started[index] = now
                # Its folder may have been edited: start the current version (the scheduler
                # retires an old one once idle, which is why an executor exits 0 here).
                progdef = _reloaded(progdef)
                restarted = self._spawn(progdef)
                self.processes[index] = (progdef, restarted)
                if on_start is not None:
                    on_start(progdef, restarted)

    def _executor_environment(self, progdef: Progdef) -> dict[str, str]:
        environment = progdef_environment(progdef)
        # Several executors share this host: each lets the OS pick its metrics port.
        environment[ENV_METRICS_PORT] = "0"
        # ...on loopback: a local cluster is for this machine (DAGYO_METRICS_ADDR overrides).
        environment.setdefault(ENV_METRICS_ADDR, LOOPBACK_METRICS_HOST)
        environment.update(self._extra_env)
        # extra_env may list the broker's nodes in another order than the scheduler's.
        environment[ENV_QUEUE] = self._extra_env.get(ENV_QUEUE) or self._queue_url
        environment[ENV_JOBS] = progdef.mailbox
        return environment

    def exited(self) -> list[tuple[Progdef, subprocess.Popen[bytes]]]:
        """The executors that have exited, with their progdefs, in the order started."""
        return [(p, process) for p, process in self.processes if process.poll() is not None]

    def terminate(self) -> None:
        """SIGTERM every live executor: the first drains it, a second stops its jobs."""
        for _, process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def stop(
        self, *, on_kill: Callable[[Progdef, subprocess.Popen[bytes]], None] | None = None
    ) -> bool:
        """Drain and wait for every executor (idempotent).

        An executor still running after the longest drain grace plus ``STOP_MARGIN_S`` is
        killed.

        Args:
            on_kill: called with an executor about to be killed; by default a warning is
                logged.

        Returns:
            True when every executor exited with status 0.
        """
        self.terminate()
        grace_s = max((p.drain_grace_s for p, _ in self.processes), default=0.0)
        deadline = time.monotonic() + grace_s + STOP_MARGIN_S
        clean = True
        for index, (progdef, process) in enumerate(self.processes):
            if index in self._due:  # exited and reported already, waiting to start again
                continue
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                (on_kill or _log_kill)(progdef, process)
                process.kill()
                process.wait()
            if process.returncode != 0:
                clean = False
        return clean


def _reloaded(progdef: Progdef) -> Progdef:
    """The progdef as its folder has it now; as it was when the folder no longer loads."""
    if progdef.directory is None:
        return progdef
    try:
        return load_progdef(progdef.directory)
    except ProgdefInvalid as e:
        log.warning("progdef %s: %s; starting its last good version", progdef.name, e)
        return progdef


def _log_kill(progdef: Progdef, process: subprocess.Popen[bytes]) -> None:
    log.warning("executor %s (pid %d) did not drain in time; killing it", progdef.name, process.pid)


def _log_exit(progdef: Progdef, process: subprocess.Popen[bytes], delay_s: float) -> None:
    log.warning(
        "executor %s (pid %d) exited with status %s; starting it again in %g s",
        progdef.name,
        process.pid,
        process.returncode,
        delay_s,
    )
