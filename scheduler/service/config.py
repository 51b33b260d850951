"""The scheduler service's settings, read once from the environment at start-up."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from executor.core.brokerurls import first_url
from executor.core.constants import (
    DEFAULT_METRICS_HOST,
    DEFAULT_QUEUE_URL,
    ENV_METRICS_PORT,
    ENV_OBJECTS,
    ENV_QUEUE,
    QueueType,
)
from executor.core.errors import DagyoError
from executor.core.progdef import sample_catalogue
from executor.core.settings import env_number, metrics_host, queue_type_of
from scheduler.constants import (
    CACHE_BYTES,
    CACHE_MAX_BYTES,
    DEFAULT_SCHEDULER_ADDRESS,
    ENV_CACHE_BYTES,
    ENV_CACHE_MAX_BYTES,
    ENV_EXPORT_CAP_BYTES,
    ENV_HEARTBEAT_TIMEOUT_S,
    ENV_PROGDEFS,
    ENV_REQUIRE_CONSUMERS,
    ENV_SCHEDULER,
    ENV_STATE,
    EXPORT_CAP_BYTES,
    HEARTBEAT_TIMEOUT_S,
    SCHEDULER_METRICS_PORT,
)
from scheduler.service.limits import ENV_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from scheduler.tls import ENV_TOKENS, ServerTls

ENV_UI = "DAGYO_UI"
ENV_GRPC_WORKERS = "DAGYO_GRPC_WORKERS"
ENV_WATCHES_PER_CLIENT = "DAGYO_WATCHES_PER_CLIENT"
ENV_WATCHER_EVENTS = "DAGYO_WATCHER_EVENTS"
ENV_TRIGGERS = "DAGYO_TRIGGERS"
ENV_TRIGGERS_HTTP = "DAGYO_TRIGGERS_HTTP"
ENV_TRIGGERS_WAITING = "DAGYO_TRIGGERS_WAITING"
# Trigger events accepted and not yet submitted as flows; past it a source is told to retry.
TRIGGERS_WAITING = 1000
ENV_UNSERVED_MAILBOX_S = "DAGYO_UNSERVED_MAILBOX_S"
ENV_SPARE_IDLE_S = "DAGYO_SPARE_IDLE_S"
ENV_LEASE_S = "DAGYO_LEASE_S"
# gRPC worker threads; an eighth (at least 4) is kept for unary calls, never for Watch.
GRPC_WORKERS = 256
# Open Watch streams of one client connection (one gRPC channel).
WATCHES_PER_CLIENT = 64
# Events buffered for one watcher before it is dropped as too slow.
WATCHER_EVENTS = 10000
DEFAULT_UI_ADDRESS = "127.0.0.1:8080"
# An old version's mailbox that no executor pulled for this long, empty and with no job of
# it open, is deleted: long enough for a restarting executor to come back to it.
UNSERVED_MAILBOX_S = 300.0
# A flow shape's spare queues (scheduler.service.spares) are deleted once no flow of that
# shape came for this long.
SPARE_IDLE_S = 60.0
# How long a scheduler's lease of a shard lasts unless renewed (every third of it): a dead
# scheduler's flows are taken over within about this long.
LEASE_S = 10.0

MEMORY = ":memory:"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def broker_identity(queue_url: str) -> str:
    """The broker a URL names, without its credentials: ``host:port vhost NAME``.

    Of a list of broker URLs (the nodes of one cluster), the first names the broker.
    """
    parts = urllib.parse.urlsplit(first_url(queue_url))
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (5671 if parts.scheme == "amqps" else 5672)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{(parts.hostname or 'localhost').lower()}:{port} vhost {vhost}"


def default_state_path(
    environ: Mapping[str, str] | None = None, queue_url: str = DEFAULT_QUEUE_URL
) -> str:
    """The per-user, per-broker SQLite file of flow records.

    ``$XDG_STATE_HOME/dagyo/scheduler-<host>-<port>-<vhost>.sqlite3``, the vhost
    percent-encoded (``%2F`` for ``/``), so schedulers of different brokers or vhosts never
    share one. ``XDG_STATE_HOME`` defaults to ``~/.local/state``, as the XDG base
    directory spec says.
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    address, _, vhost = broker_identity(queue_url).partition(" vhost ")
    host, _, port = address.rpartition(":")
    name = f"scheduler-{host}-{port}-{urllib.parse.quote(vhost, safe='')}.sqlite3"
    return str(Path(base) / "dagyo" / name)


def default_progdefs_dir() -> Path:
    """The catalogue folder used when none is given.

    Returns:
        ``progdefs/`` of the working directory when it exists, else the sample catalogue
        installed with dagyo (the ``progdefs`` package).
    """
    local = Path("progdefs")
    if local.is_dir():
        return local
    return sample_catalogue()


@dataclass(frozen=True)
class CacheBounds:
    """How big the scheduler's cache may grow.

    Attributes:
        max_bytes: ``DAGYO_CACHE_BYTES``: the whole cache; least recently used entries go.
        max_output_bytes: ``DAGYO_CACHE_MAX_BYTES``: an output past it is not cached.
    """

    max_bytes: int = CACHE_BYTES
    max_output_bytes: int = CACHE_MAX_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CacheBounds:
        """Read the bounds.

        Raises:
            DagyoError: naming the variable, when a size is not a whole number above 0.
        """
        env = os.environ if env is None else env
        return cls(
            max_bytes=env_number(env, ENV_CACHE_BYTES, CACHE_BYTES, int, above=0),
            max_output_bytes=env_number(env, ENV_CACHE_MAX_BYTES, CACHE_MAX_BYTES, int, above=0),
        )


@dataclass(frozen=True)
class SchedulerSettings:
    """How the scheduler service runs.

    Attributes:
        queue_url: the broker (``DAGYO_QUEUE``).
        address: where gRPC listens, ``host:port`` (``DAGYO_SCHEDULER``); port 0 picks a
            free port (see ``Scheduler.address``).
        state_path: where flow records are kept (``DAGYO_STATE``): a SQLite file,
            ``:memory:`` (this process only), or a ``postgresql://`` URL (see
            scheduler.service.store); empty: ``default_state_path`` of ``queue_url``.
        progdefs: the catalogue folder, or its folders (``DAGYO_PROGDEFS``, joined by
            ``os.pathsep``).
        heartbeat_timeout_s: a started job whose executor has been silent this long is
            lost and fails its flow (``DAGYO_HEARTBEAT_TIMEOUT_S``).
        export_cap_bytes: JSON bytes of exports kept with each flow record
            (``DAGYO_EXPORT_CAP_BYTES``); later items are still streamed to watchers.
        metrics_port: /metrics and /healthz (``DAGYO_METRICS_PORT``); 0 serves nothing.
        metrics_host: the interface they listen on (``DAGYO_METRICS_ADDR``; every one,
            ``0.0.0.0``, by default; ``dagyo up`` uses loopback).
        require_consumers: refuse a flow naming a progdef whose mailbox has no consumer
            and no autoscaler (``DAGYO_REQUIRE_CONSUMERS``, on by default).
        tokens_path: the token file that turns on authentication (``DAGYO_TOKENS``); empty
            runs open.
        tls: the certificate and key gRPC serves TLS with (``DAGYO_TLS_CERT``,
            ``DAGYO_TLS_KEY``, ``DAGYO_TLS_CLIENT_CA``); ``None`` serves plain text.
        ui_address: where the web dashboard listens (``DAGYO_UI``, ``127.0.0.1:8080`` from
            the environment); empty serves none.
        max_message_bytes: the largest gRPC message accepted or sent
            (``DAGYO_MAX_MESSAGE_BYTES``): bounds the Flow JSON of a submit.
        grpc_workers: gRPC worker threads (``DAGYO_GRPC_WORKERS``); an eighth of them (at
            least 4) is reserved for unary calls, the rest may hold Watch streams.
        watches_per_client: open Watch streams of one client connection
            (``DAGYO_WATCHES_PER_CLIENT``); one more is refused with RESOURCE_EXHAUSTED.
        watcher_events: events buffered for a watcher that does not read
            (``DAGYO_WATCHER_EVENTS``); past them it is told and dropped.
        triggers_dir: the folder of trigger files (``DAGYO_TRIGGERS``); None: no triggers.
        triggers_http: where CloudEvents are POSTed, ``host:port``
            (``DAGYO_TRIGGERS_HTTP``); empty: no HTTP endpoint.
        triggers_waiting: trigger events accepted and not yet started as flows, at most
            (``DAGYO_TRIGGERS_WAITING``); past it a source is told to send again.
        unserved_mailbox_s: an old progdef version's mailbox that no executor pulled for
            this long, empty and with no job of it open, is deleted
            (``DAGYO_UNSERVED_MAILBOX_S``).
        spare_idle_s: after a flow, the queues of one more flow of its shape are declared
            ahead, and deleted once no flow of that shape came for this long
            (``DAGYO_SPARE_IDLE_S``); 0 declares nothing ahead.
        lease_s: how long the lease of a shard of flows lasts unless renewed
            (``DAGYO_LEASE_S``); another scheduler takes a dead one's shards after it.
        objects_url: the object store of offloaded items (``DAGYO_OBJECTS``); empty: none
            (executors then offload nothing either).
        queue_type: the type of the durable queues (``DAGYO_QUEUE_TYPE``; None: as
            ``queue_url`` lists one broker URL or several).
        cache_bounds: how big the cache of deterministic results may grow
            (``DAGYO_CACHE_BYTES``, ``DAGYO_CACHE_MAX_BYTES``).
    """

    queue_url: str = DEFAULT_QUEUE_URL
    address: str = DEFAULT_SCHEDULER_ADDRESS
    state_path: str = ""
    progdefs: Path | tuple[Path, ...] = field(default_factory=default_progdefs_dir)
    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S
    export_cap_bytes: int = EXPORT_CAP_BYTES
    metrics_port: int = SCHEDULER_METRICS_PORT
    metrics_host: str = DEFAULT_METRICS_HOST
    require_consumers: bool = True
    tokens_path: str = ""
    tls: ServerTls | None = None
    ui_address: str = ""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grpc_workers: int = GRPC_WORKERS
    watches_per_client: int = WATCHES_PER_CLIENT
    watcher_events: int = WATCHER_EVENTS
    triggers_dir: Path | None = None
    triggers_http: str = ""
    triggers_waiting: int = TRIGGERS_WAITING
    unserved_mailbox_s: float = UNSERVED_MAILBOX_S
    spare_idle_s: float = SPARE_IDLE_S
    lease_s: float = LEASE_S
    queue_type: QueueType | None = None
    objects_url: str = ""
    cache_bounds: CacheBounds = field(default_factory=CacheBounds)

    def __post_init__(self) -> None:
        if not self.state_path:
            object.__setattr__(self, "state_path", default_state_path(None, self.queue_url))
        problems = []
        if self.heartbeat_timeout_s <= 0:
            problems.append(f"heartbeat_timeout_s must be above 0, got {self.heartbeat_timeout_s}")
        if self.export_cap_bytes < 0:
            problems.append(f"export_cap_bytes must be at least 0, got {self.export_cap_bytes}")
        if not 0 <= self.metrics_port <= 65535:
            problems.append(f"metrics_port must be 0 to 65535, got {self.metrics_port}")
        if self.max_message_bytes < 64 * 1024:
            problems.append(
                f"{ENV_MAX_MESSAGE_BYTES} must be at least 65536, got {self.max_message_bytes}"
            )
        if self.grpc_workers < 8:
            problems.append(f"{ENV_GRPC_WORKERS} must be at least 8, got {self.grpc_workers}")
        if self.watches_per_client < 1:
            problems.append(
                f"{ENV_WATCHES_PER_CLIENT} must be at least 1, got {self.watches_per_client}"
            )
        if self.watcher_events < 16:
            problems.append(f"{ENV_WATCHER_EVENTS} must be at least 16, got {self.watcher_events}")
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            problems.append(f"address {self.address!r} must be host:port, e.g. localhost:50051")
        if self.ui_address:
            ui_host, _, ui_port = self.ui_address.rpartition(":")
            if not ui_host or not ui_port.isdigit() or int(ui_port) > 65535:
                problems.append(
                    f"{ENV_UI}={self.ui_address!r} must be host:port, e.g. 127.0.0.1:8080 (or off)"
                )
        if self.unserved_mailbox_s < 0:
            problems.append(
                f"{ENV_UNSERVED_MAILBOX_S} must be at least 0, got {self.unserved_mailbox_s}"
            )
        if not 0 <= self.spare_idle_s < float("inf"):
            problems.append(
                f"{ENV_SPARE_IDLE_S} must be a number of seconds, at least 0 (0: no spares), "
                f"got {self.spare_idle_s}"
            )
        if not 0.3 <= self.lease_s < float("inf"):
            problems.append(
                f"{ENV_LEASE_S} must be a number of seconds, at least 0.3, got {self.lease_s}"
            )
        if self.triggers_http:
            http_host, _, http_port = self.triggers_http.rpartition(":")
            if not http_host or not http_port.isdigit() or int(http_port) > 65535:
                problems.append(
                    f"{ENV_TRIGGERS_HTTP}={self.triggers_http!r} must be host:port, e.g. "
                    "0.0.0.0:8090"
                )
        if self.triggers_waiting < 1:
            problems.append(
                f"{ENV_TRIGGERS_WAITING} must be at least 1, got {self.triggers_waiting}"
            )
        if problems:
            raise DagyoError("; ".join(problems))

    @property
    def host(self) -> str:
        """The host part of ``address``."""
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        """The port part of ``address`` (0: pick a free one)."""
        return int(self.address.rpartition(":")[2])

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> SchedulerSettings:
        """Read the settings from the environment; ``overrides`` win over it.

        Raises:
            DagyoError: naming the variable that holds a bad value.
        """
        env = os.environ if environ is None else environ
        queue_url = str(overrides.get("queue_url") or env.get(ENV_QUEUE) or DEFAULT_QUEUE_URL)
        values: dict[str, object] = {
            "queue_url": queue_url,
            "queue_type": queue_type_of(queue_url, env),
            "address": env.get(ENV_SCHEDULER) or DEFAULT_SCHEDULER_ADDRESS,
            "state_path": env.get(ENV_STATE) or default_state_path(env, queue_url),
            "heartbeat_timeout_s": env_number(
                env, ENV_HEARTBEAT_TIMEOUT_S, HEARTBEAT_TIMEOUT_S, float
            ),
            "export_cap_bytes": env_number(env, ENV_EXPORT_CAP_BYTES, EXPORT_CAP_BYTES, int),
            "metrics_port": env_number(env, ENV_METRICS_PORT, SCHEDULER_METRICS_PORT, int),
            "metrics_host": metrics_host(env),
            "require_consumers": _flag(env, ENV_REQUIRE_CONSUMERS, True),
            "tokens_path": env.get(ENV_TOKENS, ""),
            "tls": ServerTls.from_env(env),
            "ui_address": _ui_address(env),
            "max_message_bytes": env_number(env, ENV_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, int),
            "grpc_workers": env_number(env, ENV_GRPC_WORKERS, GRPC_WORKERS, int),
            "watches_per_client": env_number(env, ENV_WATCHES_PER_CLIENT, WATCHES_PER_CLIENT, int),
            "watcher_events": env_number(env, ENV_WATCHER_EVENTS, WATCHER_EVENTS, int),
            "triggers_dir": Path(env[ENV_TRIGGERS]) if env.get(ENV_TRIGGERS) else None,
            "triggers_http": env.get(ENV_TRIGGERS_HTTP, "").strip(),
            "triggers_waiting": env_number(env, ENV_TRIGGERS_WAITING, TRIGGERS_WAITING, int),
            "unserved_mailbox_s": env_number(
                env, ENV_UNSERVED_MAILBOX_S, UNSERVED_MAILBOX_S, float
            ),
            "spare_idle_s": env_number(env, ENV_SPARE_IDLE_S, SPARE_IDLE_S, float),
            "lease_s": env_number(env, ENV_LEASE_S, LEASE_S, float),
            "objects_url": env.get(ENV_OBJECTS, "").strip(),
            "cache_bounds": CacheBounds.from_env(env),
        }
        folders = [Path(f) for f in env.get(ENV_PROGDEFS, "").split(os.pathsep) if f]
        if folders:
            values["progdefs"] = folders[0] if len(folders) == 1 else tuple(folders)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _ui_address(env: Mapping[str, str]) -> str:
    raw = env.get(ENV_UI)
    if raw is None:
        return DEFAULT_UI_ADDRESS
    return "" if raw.strip().lower() in ("", *_FALSE) else raw.strip()


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise DagyoError(f"{name}={raw!r} is not a yes/no value: use 1 or 0")
