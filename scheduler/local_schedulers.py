"""The scheduler processes a local cluster runs besides its own (``dagyo up --schedulers N``).

Several schedulers share one PostgreSQL state and one broker vhost; the first runs in the
``dagyo up`` process (with the dashboard and the triggers), each other one is a ``dagyo
scheduler`` process on the next port, started again after an exit as executors are, and
stopped (SIGTERM) after the executors drained.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from executor.core.constants import ENV_METRICS_ADDR, ENV_METRICS_PORT, ENV_OBJECTS, ENV_QUEUE
from executor.core.errors import DagyoError
from executor.core.progdef import catalogue_folders
from scheduler.constants import ENV_SCHEDULER, ENV_STATE
from scheduler.local_processes import (
    RESTART_FIRST_S,
    RESTART_MAX_S,
    RESTART_RESET_S,
    own_process_group,
)
from scheduler.service.config import ENV_TRIGGERS, ENV_TRIGGERS_HTTP, ENV_UI, SchedulerSettings
from scheduler.service.store import is_postgres

log = logging.getLogger("dagyo.local")

# A scheduler process that does not exit this long after SIGTERM is killed.
SCHEDULER_STOP_S = 30.0
# How often wait_serving() asks each scheduler's health service.
SERVING_POLL_S = 0.2


def shared_state_problem(schedulers: int, state: str) -> str:
    """Why ``schedulers`` schedulers cannot run on ``state``; empty when they can.

    Example:
        >>> shared_state_problem(2, "flows.sqlite3").startswith("--schedulers 2: schedulers")
        True
    """
    if schedulers <= 1 or is_postgres(state):
        return ""
    return (
        f"--schedulers {schedulers}: schedulers can only share a PostgreSQL state, not a "
        f"SQLite file ({state or 'the default one'}): set DAGYO_STATE (or --state) to "
        "postgresql://USER@HOST:5432/DATABASE, or run one scheduler"
    )


def consecutive_addresses(address: str, count: int) -> list[str]:
    """``count`` addresses on ``address``'s host from its port up; port 0: free ports.

    Example:
        >>> consecutive_addresses("127.0.0.1:50051", 3)
        ['127.0.0.1:50051', '127.0.0.1:50052', '127.0.0.1:50053']
    """
    host, _, port = address.rpartition(":")
    if int(port):
        return [f"{host}:{int(port) + i}" for i in range(count)]
    return [address] + [f"{host}:{_free_port(host)}" for _ in range(count - 1)]


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


@dataclass
class SchedulerProcess:
    """One ``dagyo scheduler`` process of the cluster, on ``address``."""

    address: str
    process: subprocess.Popen[bytes]
    started: float
    delay_s: float | None = None
    due: float | None = None


class SchedulerProcesses:
    """The cluster's scheduler processes but its first: started, restarted, stopped.

    Args:
        settings: the first scheduler's settings; the others get the same broker, state,
            catalogue, heartbeat timeout and object store, no dashboard and no triggers
            (they stay with the first), and a metrics port of their own.
        count: how many scheduler processes (the cluster's schedulers less its first).

    Raises:
        DagyoError: when there are any and the state is not PostgreSQL.
    """

    def __init__(self, settings: SchedulerSettings, count: int) -> None:
        problem = shared_state_problem(count + 1, settings.state_path)
        if problem:
            raise DagyoError(problem)
        self._settings = settings
        self._count = count
        self.processes: list[SchedulerProcess] = []

    @property
    def addresses(self) -> list[str]:
        """Where the scheduler processes listen, in the order started."""
        return [entry.address for entry in self.processes]

    def listening(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """(address, process) of each scheduler process, in the order started."""
        return [(entry.address, entry.process) for entry in self.processes]

    def start(self, first: str) -> None:
        """Start the scheduler processes on the ports after ``first``'s, the first
        scheduler's ``host:port`` (free ports when it is 0)."""
        if self.processes:
            return
        for address in consecutive_addresses(first, self._count + 1)[1:]:
            self.processes.append(
                SchedulerProcess(address, self._spawn(address), started=time.monotonic())
            )

    def _spawn(self, address: str) -> subprocess.Popen[bytes]:
        settings = self._settings
        command = [sys.executable, "-m", "scheduler.cli", "scheduler", "--no-ui"]
        command += ["--listen", address, "--state", settings.state_path]
        command += ["--heartbeat-timeout", repr(settings.heartbeat_timeout_s)]
        for folder in catalogue_folders(settings.progdefs):
            command += ["--progdefs", str(folder)]
        return subprocess.Popen(
            command,
            env=self._environment(address),
            process_group=0,
            preexec_fn=own_process_group,
        )

    def _environment(self, address: str) -> dict[str, str]:
        settings = self._settings
        environment = dict(os.environ)
        for name in (ENV_TRIGGERS, ENV_TRIGGERS_HTTP, ENV_UI, ENV_METRICS_PORT):
            environment.pop(name, None)
        environment[ENV_QUEUE] = settings.queue_url
        environment[ENV_SCHEDULER] = address
        environment[ENV_STATE] = settings.state_path
        if settings.objects_url:
            environment[ENV_OBJECTS] = settings.objects_url
        # Its own metrics port: 9101 when free, else one the OS picks; none when the first
        # serves none.
        if not settings.metrics_port:
            environment[ENV_METRICS_PORT] = "0"
        environment[ENV_METRICS_ADDR] = settings.metrics_host
        return environment

    def wait_serving(self, *, timeout_s: float, stop: threading.Event | None = None) -> list[str]:
        """Wait until each running scheduler process says SERVING on gRPC health.

        Returns:
            The addresses still not serving (empty when all are), in order.
        """
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout_s
        serving: set[str] = set()
        while True:
            waiting = [
                p.address
                for p in self.processes
                if p.address not in serving and p.process.poll() is None
            ]
            serving.update(a for a in waiting if _serving(a))
            waiting = [a for a in waiting if a not in serving]
            if not waiting or stop.is_set() or time.monotonic() > deadline:
                return waiting
            stop.wait(SERVING_POLL_S)

    def supervise(
        self,
        *,
        on_exit: Callable[[str, subprocess.Popen[bytes], float], None] | None = None,
        on_start: Callable[[str, subprocess.Popen[bytes]], None] | None = None,
    ) -> None:
        """Start again, after its backoff, each scheduler process that exited (1 s, doubling
        to 30 s while it keeps exiting); call it now and then.

        Args:
            on_exit: called once for each exit, with its address, the process and the delay
                before it is started again.
            on_start: called with each scheduler process started again.
        """
        now = time.monotonic()
        for entry in self.processes:
            if entry.process.poll() is None:
                continue
            if entry.due is None:
                ran_s = now - entry.started
                last = entry.delay_s
                entry.delay_s = (
                    RESTART_FIRST_S
                    if last is None or ran_s >= RESTART_RESET_S
                    else min(last * 2, RESTART_MAX_S)
                )
                entry.due = now + entry.delay_s
                (on_exit or _log_exit)(entry.address, entry.process, entry.delay_s)
            elif now >= entry.due:
                entry.due, entry.started = None, now
                entry.process = self._spawn(entry.address)
                if on_start is not None:
                    on_start(entry.address, entry.process)

    def stop(self) -> bool:
        """SIGTERM every scheduler process and wait for it (killed after SCHEDULER_STOP_S).

        Returns:
            True when every one running exited with status 0 (one that exited before and
            waits to start again was reported already).
        """
        live = [p for p in self.processes if p.due is None]
        for entry in live:
            if entry.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    entry.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SCHEDULER_STOP_S
        clean = True
        for entry in live:
            try:
                entry.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "scheduler %s (pid %d) did not stop in time; killing it",
                    entry.address,
                    entry.process.pid,
                )
                entry.process.kill()
                entry.process.wait()
            clean = clean and entry.process.returncode == 0
        self.processes = []
        return clean


def _serving(address: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the scheduler at ``address`` answers SERVING on gRPC health (TLS as a
    client of it would dial it)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from scheduler.tls import client_credentials, client_target

    credentials = client_credentials(address, environ)
    target = client_target(address)
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    except grpc.RpcError:
        return False
    finally:
        channel.close()
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _log_exit(address: str, process: subprocess.Popen[bytes], delay_s: float) -> None:
    log.warning(
        "scheduler %s (pid %d) exited with status %s; starting it again in %g s",
        address,
        process.pid,
        process.returncode,
        delay_s,
    )
