"""Executor settings, read once from the environment at start-up."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from executor.constants import (
    DEFAULT_QUEUE_URL,
    ENV_JOBS,
    ENV_QUEUE,
    EXECUTOR_METRICS_PORT,
    HEARTBEAT_INTERVAL_S,
)
from executor.errors import DagyoError
from executor.progdef import Progdef

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class ExecutorSettings:
    """How one executor runs.

    Attributes:
        queue_url: the broker (DAGYO_QUEUE).
        mailbox: the queue of jobs to pull (DAGYO_JOBS, else derived from the progdef).
        max_jobs: jobs run at once (DAGYO_MAX_JOBS, else the progdef's scaling.max_jobs).
        heartbeat_interval_s: DAGYO_HEARTBEAT_INTERVAL_S.
        drain_grace_s: how long a drain waits for running jobs (DAGYO_DRAIN_GRACE_S, else
            the progdef's drain_grace_s).
        metrics_port: /healthz, /readyz and /metrics (DAGYO_METRICS_PORT; 0 picks a free
            port, -1 serves nothing).
        executor_id: names this process in heartbeats and failure reports.
        mailbox_derived: True when DAGYO_JOBS was unset.
    """

    queue_url: str
    mailbox: str
    max_jobs: int
    heartbeat_interval_s: float
    drain_grace_s: float
    metrics_port: int
    executor_id: str
    mailbox_derived: bool = False

    @classmethod
    def from_env(cls, progdef: Progdef) -> ExecutorSettings:
        """Read the settings for ``progdef`` from the environment.

        Raises:
            DagyoError: naming the variable that holds a bad value.
        """
        mailbox = os.environ.get(ENV_JOBS, "")
        return cls(
            queue_url=os.environ.get(ENV_QUEUE, DEFAULT_QUEUE_URL),
            mailbox=mailbox or progdef.mailbox,
            max_jobs=env_number(os.environ, "DAGYO_MAX_JOBS", progdef.scaling.max_jobs, int),
            heartbeat_interval_s=env_number(
                os.environ, "DAGYO_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S, float
            ),
            drain_grace_s=env_number(
                os.environ, "DAGYO_DRAIN_GRACE_S", progdef.drain_grace_s, float
            ),
            metrics_port=env_number(os.environ, "DAGYO_METRICS_PORT", EXECUTOR_METRICS_PORT, int),
            executor_id=f"{progdef.name}-{socket.gethostname()}-{os.getpid()}-"
            f"{uuid.uuid4().hex[:4]}",
            mailbox_derived=not mailbox,
        )


def env_number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """Read a number from an environment; ``default`` when unset or empty.

    Raises:
        DagyoError: naming the variable when its value is not a number.
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise DagyoError(f"{name}={raw!r} is not a number: fix or unset it") from None
