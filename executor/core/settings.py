"""Executor settings, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from executor.core.brokerurls import first_url, split_urls
from executor.core.constants import (
    DEFAULT_METRICS_HOST,
    DEFAULT_QUEUE_URL,
    ENV_JOBS,
    ENV_METRICS_ADDR,
    ENV_METRICS_PORT,
    ENV_ONE_JOB_IDLE_S,
    ENV_QUEUE,
    ENV_QUEUE_TYPE,
    ENV_RECONNECT_MAX_DELAY_S,
    EXECUTOR_METRICS_PORT,
    HEARTBEAT_INTERVAL_S,
    ONE_JOB_IDLE_S,
    RECONNECT_MAX_DELAY_S,
    QueueType,
)
from executor.core.errors import BrokerUrlInvalid, DagyoError
from executor.core.progdef import MAX_JOBS_LIMIT, Progdef

N = TypeVar("N", int, float)
# A DNS host name (RFC 1123 labels), for DAGYO_METRICS_ADDR given as a name.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class ExecutorSettings:
    """How one executor runs.

    Attributes:
        queue_url: the broker (DAGYO_QUEUE).
        queue_type: the type of its mailbox (DAGYO_QUEUE_TYPE, see queue_type_of).
        mailbox: the queue of jobs to pull (DAGYO_JOBS, else derived from the progdef).
        max_jobs: jobs run at once (DAGYO_MAX_JOBS, else the progdef's scaling.max_jobs).
        heartbeat_interval_s: DAGYO_HEARTBEAT_INTERVAL_S.
        drain_grace_s: how long a drain waits for running jobs (DAGYO_DRAIN_GRACE_S, else
            the progdef's drain_grace_s).
        metrics_port: /healthz, /readyz and /metrics (DAGYO_METRICS_PORT; 0 picks a free
            port, -1 serves nothing).
        metrics_host: the interface they listen on (DAGYO_METRICS_ADDR; every one,
            ``0.0.0.0``, by default).
        executor_id: names this process in heartbeats and failure reports.
        mailbox_derived: True when DAGYO_JOBS was unset.
        one_job: run one job, then drain and exit (``--one-job``, a pod of a progdef of
            scaling.mode job); max_jobs is then 1.
        one_job_idle_s: with ``one_job``, exit when no job came for this long
            (DAGYO_ONE_JOB_IDLE_S).
    """

    queue_url: str
    mailbox: str
    max_jobs: int
    heartbeat_interval_s: float
    drain_grace_s: float
    metrics_port: int
    executor_id: str
    mailbox_derived: bool = False
    one_job: bool = False
    one_job_idle_s: float = ONE_JOB_IDLE_S
    metrics_host: str = DEFAULT_METRICS_HOST
    queue_type: QueueType = QueueType.CLASSIC

    @classmethod
    def from_env(cls, progdef: Progdef, *, one_job: bool = False) -> ExecutorSettings:
        """Read the settings for ``progdef`` from the environment.

        Args:
            one_job: run exactly one job, then exit (``--one-job``).

        Raises:
            DagyoError: naming the variable that holds a bad value.
        """
        mailbox = os.environ.get(ENV_JOBS, "")
        queue_url = os.environ.get(ENV_QUEUE) or DEFAULT_QUEUE_URL
        check_url(queue_url)
        queue_type = queue_type_of(queue_url)
        reconnect_max_delay_s()
        max_jobs = env_number(os.environ, "DAGYO_MAX_JOBS", progdef.scaling.max_jobs, int)
        idle_s = env_number(os.environ, ENV_ONE_JOB_IDLE_S, ONE_JOB_IDLE_S, float, above=0)
        if one_job:
            max_jobs = 1  # one job per process: its one slot
        if not 1 <= max_jobs <= MAX_JOBS_LIMIT:
            raise DagyoError(
                f"DAGYO_MAX_JOBS={max_jobs} is out of bounds: from 1 to {MAX_JOBS_LIMIT} (each "
                "running job is a thread of its own): run more executors"
            )
        return cls(
            queue_url=queue_url,
            queue_type=queue_type,
            mailbox=mailbox or progdef.mailbox,
            max_jobs=max_jobs,
            heartbeat_interval_s=env_number(
                os.environ, "DAGYO_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S, float
            ),
            drain_grace_s=env_number(
                os.environ, "DAGYO_DRAIN_GRACE_S", progdef.drain_grace_s, float
            ),
            metrics_port=env_number(os.environ, ENV_METRICS_PORT, EXECUTOR_METRICS_PORT, int),
            metrics_host=metrics_host(os.environ),
            executor_id=f"{progdef.name}-{socket.gethostname()}-{os.getpid()}-"
            f"{uuid.uuid4().hex[:4]}",
            mailbox_derived=not mailbox,
            one_job=one_job,
            one_job_idle_s=idle_s,
        )


def queue_type_of(queue_url: str, env: Mapping[str, str] | None = None) -> QueueType:
    """The type of dagyo's durable queues: DAGYO_QUEUE_TYPE, else quorum when ``queue_url``
    (DAGYO_QUEUE) lists several broker URLs, else classic.

    AMQP does not tell a client how many nodes its broker has: a list of URLs is the sign
    of a cluster, whose durable queues must be replicated to outlive a node.

    Raises:
        DagyoError: naming the variable when its value is neither classic nor quorum.
    """
    raw = (os.environ if env is None else env).get(ENV_QUEUE_TYPE, "").strip()
    if not raw:
        several = len(split_urls(queue_url)) > 1
        return QueueType.QUORUM if several else QueueType.CLASSIC
    try:
        return QueueType(raw.lower())
    except ValueError:
        raise DagyoError(
            f"{ENV_QUEUE_TYPE}={raw!r} is not a queue type: classic, or quorum (replicated, "
            "for a broker of several nodes); unset, quorum when DAGYO_QUEUE lists several URLs"
        ) from None


def reconnect_max_delay_s(env: Mapping[str, str] | None = None) -> float:
    """The longest wait between two reconnection attempts (DAGYO_RECONNECT_MAX_DELAY_S).

    Raises:
        DagyoError: naming the variable when its value is not a positive number.
    """
    return env_number(
        os.environ if env is None else env,
        ENV_RECONNECT_MAX_DELAY_S,
        RECONNECT_MAX_DELAY_S,
        float,
        above=0,
    )


def metrics_host(env: Mapping[str, str]) -> str:
    """The interface health and metrics listen on: DAGYO_METRICS_ADDR, else every one.

    It is a host alone, an IP address (``127.0.0.1``, ``::1``, ``[::1]``) or a name; the
    port is DAGYO_METRICS_PORT.

    Raises:
        DagyoError: naming the variable when its value is not a host.
    """
    raw = env.get(ENV_METRICS_ADDR, "").strip()
    if not raw:
        return DEFAULT_METRICS_HOST
    host = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOST_NAME.match(host) and not host.replace(".", "").isdigit():
        return host
    start = f"{ENV_METRICS_ADDR}={raw!r}"
    if re.match(r"^(\[[^]]*\]|[^:]*):\d+$", raw):
        raise DagyoError(
            f"{start} holds a port: give the host alone; the port is {ENV_METRICS_PORT}"
        )
    raise DagyoError(
        f"{start} is not a host name or IP address: give the interface health and metrics "
        "listen on, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    )


def env_number(
    env: Mapping[str, str],
    name: str,
    default: N,
    kind: Callable[[str], N],
    *,
    above: float | None = None,
    most: float | None = None,
    why_most: str = "",
) -> N:
    """Read a number from an environment; ``default`` when unset or empty.

    The one reader of every number dagyo takes from its environment, so that each is as
    strict as the others and a bad one is said alike.

    Args:
        kind: ``int`` or ``float`` (an int variable read as ``float`` takes ``1e6``).
        above: the value must be more than this (and finite).
        most: the value may be at most this (and finite); ``why_most`` says why, after it.

    Raises:
        DagyoError: naming the variable and its value when it is not a number or out of
            its bounds, and saying what to do.
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except (ValueError, OverflowError):
        raise DagyoError(f"{name}={raw!r} is not a number: fix or unset it") from None
    bounded = above is not None or most is not None
    if bounded and not math.isfinite(value):
        raise DagyoError(f"{name}={raw!r} is not a number: fix or unset it")
    if above is not None and not value > above:
        raise DagyoError(f"{name}={raw!r} must be more than {above:g}: fix or unset it")
    if most is not None and value > most:
        raise DagyoError(f"{name}={raw!r} is more than {most:g}{why_most}: lower it or unset it")
    return value


def check_url(url: str) -> None:
    """Check that ``url`` is an amqp:// or amqps:// URL with a host and a valid port, or a
    list of such URLs separated by ``;`` (see :mod:`executor.core.brokerurls`).

    Raises:
        BrokerUrlInvalid: naming the URL that is wrong and what is wrong with it, every
            password redacted.
    """
    for one in split_urls(url):
        _check_one_url(one)


def _check_one_url(url: str) -> None:
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("amqp", "amqps"):
        raise BrokerUrlInvalid(url, "it must start with amqp:// or amqps://")
    userinfo, _, address = rest.rpartition("@")
    if any(c in userinfo for c in "/?#@"):
        raise BrokerUrlInvalid(url, "the user name or password holds an unencoded # / ? or @")
    if ";" in address:
        raise BrokerUrlInvalid(
            url, "several broker URLs are separated by ;, each starting with amqp:// or amqps://"
        )
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises on a port out of range or not a number)
    except ValueError:
        raise BrokerUrlInvalid(url, "the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise BrokerUrlInvalid(url, "it names no host")


def vhost_of(url: str) -> str:
    """The vhost an amqp:// URL names (``/`` when it names none; the first URL's of a list)."""
    path = urllib.parse.urlsplit(first_url(url)).path.lstrip("/")
    return urllib.parse.unquote(path) or "/"
