"""A local cluster on one host: one executor process per progdef and the scheduler in-process.

``dagyo up`` runs one; a benchmark or a script can too::

    with LocalCluster(progdefs_dir=Path("progdefs"), queue_url=url) as cluster:
        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(flow_json)

The executors are ``python -m executor PROGDEF_DIR`` processes on the broker at
``queue_url``; stopping the cluster drains them (SIGTERM) before it stops the scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

from executor.constants import (
    DEFAULT_QUEUE_URL,
    ENV_JOBS,
    ENV_METRICS_ADDR,
    ENV_METRICS_PORT,
    ENV_QUEUE,
    HEARTBEAT_TIMEOUT_S,
    LOOPBACK_METRICS_HOST,
)
from executor.errors import DagyoError, ProgdefInvalid
from executor.progdef import Progdef, load_catalogue, load_progdef
from executor.version import VERSION_FILE
from scheduler.local_processes import mailbox_consumers, own_process_group, progdef_environment
from scheduler.service.config import MEMORY, SchedulerSettings, default_progdefs_dir
from scheduler.service.server import Scheduler

log = logging.getLogger("dagyo.local")


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


# How long start() waits for every mailbox to have a consumer.
READY_TIMEOUT_S = 60.0
# On stop, executors get their drain grace plus this before they are killed.
STOP_MARGIN_S = 15.0
# How often wait_ready() asks the broker for the mailboxes' consumers.
READY_POLL_S = 0.2
# An executor that exits is started again after this, doubled at each exit up to
# RESTART_MAX_S; one that ran RESTART_RESET_S before it exited starts over at the first.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_S = 60.0


class LocalCluster:
    """Executor processes for a catalogue, and the scheduler service in this process.

    Args:
        progdefs_dir: the catalogue folder; by default :func:`default_progdefs_dir`.
        queue_url: the broker the executors and the scheduler use.
        listen: where the scheduler serves gRPC, ``host:port``; port 0 picks a free one
            (see :attr:`address`).
        executors_per_progdef: executor processes started for each progdef.
        heartbeat_timeout_s: a started job whose executor has been silent this long fails
            its flow.
        state_path: the scheduler's SQLite file of flow records; ``:memory:`` keeps none.
        extra_env: added to each executor's environment (``DAGYO_QUEUE`` and
            ``DAGYO_JOBS`` are always the cluster's). Of this process's own environment an
            executor gets only the ``DAGYO_*`` settings, what a process needs (``PATH``,
            ``HOME``, ``LANG``, ``PYTHON*``…), its progdef's ``env`` and its declared
            ``secrets``.
        log_dir: when set, each executor runs in this folder and writes its output to
            ``executor-<progdef>.log`` there (see :meth:`executor_log`), instead of
            inheriting stdout and stderr.

    Raises:
        ProgdefInvalid: when the catalogue folder is missing or malformed.
        DagyoError: when a scheduler setting holds a bad value.

    Attributes:
        settings: the scheduler's :class:`SchedulerSettings`.
        catalogue: the progdefs, by name.
        scheduler: the scheduler service once started, else None.
    """

    def __init__(
        self,
        *,
        progdefs_dir: Path | str | None = None,
        queue_url: str = DEFAULT_QUEUE_URL,
        listen: str = "127.0.0.1:0",
        executors_per_progdef: int = 1,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        state_path: str = MEMORY,
        extra_env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        settings = SchedulerSettings(
            queue_url=queue_url,
            address=listen,
            state_path=state_path,
            progdefs=Path(progdefs_dir) if progdefs_dir is not None else default_progdefs_dir(),
            heartbeat_timeout_s=heartbeat_timeout_s,
            # Several local clusters (or a cluster and `dagyo scheduler`) may share a host.
            metrics_port=0,
        )
        self._setup(settings, executors_per_progdef, extra_env, log_dir)

    @classmethod
    def from_settings(
        cls,
        settings: SchedulerSettings,
        *,
        executors_per_progdef: int = 1,
        extra_env: Mapping[str, str] | None = None,
    ) -> LocalCluster:
        """A cluster whose scheduler runs with ``settings`` as they are (``dagyo up``).

        Raises:
            ProgdefInvalid: when the catalogue folder is missing or malformed.
        """
        cluster = cls.__new__(cls)
        cluster._setup(settings, executors_per_progdef, extra_env)
        return cluster

    def _setup(
        self,
        settings: SchedulerSettings,
        executors_per_progdef: int,
        extra_env: Mapping[str, str] | None,
        log_dir: Path | None = None,
    ) -> None:
        if executors_per_progdef < 1:
            raise DagyoError(
                f"executors_per_progdef must be 1 or more, got {executors_per_progdef}"
            )
        self.settings = settings
        self.catalogue: dict[str, Progdef] = load_catalogue(settings.progdefs)
        self.executors_per_progdef = executors_per_progdef
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.log_dir = log_dir
        self.scheduler: Scheduler | None = None
        self._processes: list[tuple[Progdef, subprocess.Popen[bytes]]] = []
        # By index in _processes: when it started, its last restart delay, when it is due.
        self._started: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self._due: dict[int, float] = {}

    @property
    def address(self) -> str:
        """The scheduler's gRPC ``host:port``: once started, with the port it picked for 0."""
        return self.scheduler.address if self.scheduler is not None else self.settings.address

    @property
    def executors(self) -> dict[str, list[subprocess.Popen[bytes]]]:
        """The executor processes started so far, by progdef name."""
        executors: dict[str, list[subprocess.Popen[bytes]]] = {}
        for progdef, process in self._processes:
            executors.setdefault(progdef.name, []).append(process)
        return executors

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the executors, wait until every mailbox has a consumer, start the scheduler.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
            DagyoError: when an executor exits before it consumes its mailbox, or some
                mailbox still has no consumer after ``READY_TIMEOUT_S``; the executors
                started are stopped first.
        """
        from executor.amqp import connect

        connect(self.settings.queue_url).close()  # fail fast, before any process starts
        try:
            for progdef in self.catalogue.values():
                for _ in range(self.executors_per_progdef):
                    self.start_executor(progdef)
            waiting = self.wait_ready()
            exited = self.exited()
            if exited:
                progdef, process = exited[0]
                raise DagyoError(
                    f"executor {progdef.name} (pid {process.pid}) exited with status "
                    f"{process.returncode} before it consumed mailbox {progdef.mailbox}"
                )
            if waiting:
                raise DagyoError(
                    f"still no executor consuming {', '.join(waiting)} after {READY_TIMEOUT_S:g} s"
                )
            self.start_scheduler()
        except BaseException:
            self.stop()
            raise

    def start_executor(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        """Start one more executor process for ``progdef``; it inherits stdout and stderr."""
        self._started[len(self._processes)] = time.monotonic()
        process = self._spawn(progdef)
        self._processes.append((progdef, process))
        return process

    def _spawn(self, progdef: Progdef) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "executor", str(progdef.directory)]
        if self.log_dir is None:
            return subprocess.Popen(
                command,
                env=self._executor_environment(progdef),
                process_group=0,
                preexec_fn=own_process_group,
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"executor-{progdef.name}.log", "ab") as log_file:
            return subprocess.Popen(
                command,
                env=self._executor_environment(progdef),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.log_dir,
                process_group=0,
                preexec_fn=own_process_group,
            )

    def executor_log(self, name: str) -> str:
        """What the executors of progdef ``name`` wrote so far (with ``log_dir`` set)."""
        if self.log_dir is None:
            raise DagyoError("the executors' output is not kept: give the cluster a log_dir")
        path = self.log_dir / f"executor-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def delete_mailboxes(self) -> None:
        """Delete the catalogue's mailboxes (once its executors are gone)."""
        from executor.amqp import connect

        connection = connect(self.settings.queue_url)
        try:
            channel = connection.channel()
            for progdef in self.catalogue.values():
                channel.queue_delete(progdef.mailbox)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

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
        for index, (progdef, process) in enumerate(self._processes):
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
                self._processes[index] = (progdef, restarted)
                if on_start is not None:
                    on_start(progdef, restarted)

    def _executor_environment(self, progdef: Progdef) -> dict[str, str]:
        environment = progdef_environment(progdef)
        # Several executors share this host: each lets the OS pick its metrics port.
        environment[ENV_METRICS_PORT] = "0"
        # ...on loopback: a local cluster is for this machine (DAGYO_METRICS_ADDR overrides).
        environment.setdefault(ENV_METRICS_ADDR, LOOPBACK_METRICS_HOST)
        environment.update(self.extra_env)
        environment[ENV_QUEUE] = self.settings.queue_url
        environment[ENV_JOBS] = progdef.mailbox
        return environment

    def wait_ready(
        self, *, timeout_s: float = READY_TIMEOUT_S, stop: threading.Event | None = None
    ) -> list[str]:
        """Wait until every started executor's mailbox has a consumer.

        Args:
            timeout_s: give up after this long.
            stop: give up as soon as it is set.

        Returns:
            The mailboxes still without a consumer, sorted: empty when all are consumed;
            else the wait timed out, was stopped, or an executor exited (see :meth:`exited`).

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
        """
        from executor.amqp import connect

        stop = stop or threading.Event()
        waiting = {progdef.mailbox for progdef, _ in self._processes}
        deadline = time.monotonic() + timeout_s
        connection = connect(self.settings.queue_url)
        try:
            while waiting and not stop.is_set() and not self.exited():
                waiting = {m for m in waiting if not mailbox_consumers(connection, m)}
                if waiting and time.monotonic() > deadline:
                    break
                stop.wait(READY_POLL_S)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
        return sorted(waiting)

    def start_scheduler(self) -> Scheduler:
        """Start the scheduler service in this process and return it.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
            DagyoError: when the state file cannot be opened or the address is taken.
        """
        # Kept even when start() fails, so that stop() releases what it got to.
        self.scheduler = Scheduler(self.settings)
        self.scheduler.start()
        return self.scheduler

    def stop_scheduler(self) -> None:
        """Stop the scheduler service, leaving the executors running (idempotent)."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    # --- watch and stop ----------------------------------------------------------------------

    def exited(self) -> list[tuple[Progdef, subprocess.Popen[bytes]]]:
        """The executors that have exited, with their progdefs, in the order started."""
        return [(p, process) for p, process in self._processes if process.poll() is not None]

    def terminate(self) -> None:
        """SIGTERM every live executor: the first drains it, a second stops its jobs."""
        for _, process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def stop(
        self, *, on_kill: Callable[[Progdef, subprocess.Popen[bytes]], None] | None = None
    ) -> bool:
        """Drain and wait for every executor, then stop the scheduler (idempotent).

        An executor still running after the longest drain grace plus ``STOP_MARGIN_S`` is
        killed.

        Args:
            on_kill: called with an executor about to be killed; by default a warning is
                logged.

        Returns:
            True when every executor exited with status 0.
        """
        self.terminate()
        grace_s = max((p.drain_grace_s for p, _ in self._processes), default=0.0)
        deadline = time.monotonic() + grace_s + STOP_MARGIN_S
        clean = True
        for index, (progdef, process) in enumerate(self._processes):
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
        self.stop_scheduler()
        return clean

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


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
