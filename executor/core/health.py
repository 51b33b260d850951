"""The HTTP endpoint of the executor and the scheduler: /healthz, /readyz and /metrics."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Mapping, MutableMapping
from http.server import BaseHTTPRequestHandler

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import generate_latest

from executor.core.constants import DEFAULT_METRICS_HOST, ENV_METRICS_ADDR, ENV_METRICS_PORT
from executor.core.errors import DagyoError
from executor.core.httpserver import HttpServer

HEALTH_THREAD = "dagyo-health"
# Seconds: from a job that takes milliseconds to one that streams for hours.
JOB_DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
# Seconds a job waited in its mailbox: near 0 while executors keep up.
QUEUE_WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


class ExecutorMetrics:
    """The executor's Prometheus metrics, in a registry of its own (docs/observability.md).

    Items sent and received are counted live (at each heartbeat, and the rest when a job
    ends), so ``rate()`` of them is items per second on each port.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counting = threading.Lock()
        self.jobs_running = Gauge(
            "dagyo_executor_jobs_running", "Jobs running now", registry=self.registry
        )
        self.jobs = Counter(
            "dagyo_executor_jobs", "Jobs finished, by outcome", ["outcome"], registry=self.registry
        )
        self.panics = Counter("dagyo_executor_panics", "Jobs that panicked", registry=self.registry)
        self.items = Counter(
            "dagyo_executor_items_sent",
            "Items sent, per output port ('node.port'), counted live",
            ["edge"],
            registry=self.registry,
        )
        self.items_received = Counter(
            "dagyo_executor_items_received",
            "Items received, per input port ('node.port'), counted live",
            ["edge"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "dagyo_executor_job_duration_seconds",
            "Seconds from taking a job to its end, by outcome",
            ["outcome"],
            buckets=JOB_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "dagyo_executor_queue_wait_seconds",
            "Seconds a job waited in its mailbox, from the scheduler's publish to its taking",
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.frames = Counter(
            "dagyo_executor_frames_sent", "Frames sent, per edge", ["edge"], registry=self.registry
        )
        self.heartbeat_age = Gauge(
            "dagyo_executor_heartbeat_age_seconds",
            "Seconds since the last heartbeat was sent",
            registry=self.registry,
        )

    def count_items(
        self,
        node: str,
        sent: Mapping[str, int],
        received: Mapping[str, int],
        counted: MutableMapping[tuple[str, str], int],
    ) -> None:
        """Add a job's items since it was last counted to the per-port counters.

        Args:
            sent, received: the job's counts so far, per output and input port.
            counted: what was counted of this job already (kept by the caller, per job).
        """
        with self._counting:  # the heartbeat thread and the I/O thread both count
            for side, counts, counter in (
                ("out", sent, self.items),
                ("in", received, self.items_received),
            ):
                for port, count in counts.items():
                    delta = count - counted.get((side, port), 0)
                    if delta > 0:
                        counter.labels(f"{node}.{port}").inc(delta)
                        counted[(side, port)] = count


class HealthServer:
    """The one tiny HTTP server of dagyo: /healthz, /readyz and /metrics on a thread of its own.

    The executor and the scheduler both serve it.

    Args:
        port: the TCP port; 0 picks a free one (see ``port``).
        host: the interface to listen on (``DAGYO_METRICS_ADDR``): an IPv4 or IPv6 address
            or a name; ``0.0.0.0`` is every one.
        metrics: returns what ``/metrics`` serves, in the Prometheus text format.
        live: ``/healthz`` answers 200 while it returns True, else 503.
        ready: ``/readyz`` likewise; None serves no ``/readyz``.
        fixed: the port was asked for (``DAGYO_METRICS_PORT``): a busy one is an error;
            else a busy port falls back to a free one.
        unhealthy: the body of a 503.

    Raises:
        DagyoError: when ``fixed`` and the port is in use, naming the port and the variable;
            when no interface has the address ``host``, naming it and its variable.
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = DEFAULT_METRICS_HOST,
        metrics: Callable[[], bytes],
        live: Callable[[], bool],
        ready: Callable[[], bool] | None = None,
        fixed: bool = True,
        unhealthy: bytes = b"not ready\n",
    ) -> None:
        checks = {"/healthz": live, **({"/readyz": ready} if ready is not None else {})}
        paths = ", ".join([*checks, "/metrics"])

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics(), CONTENT_TYPE_LATEST)
                elif path in checks:
                    ok = checks[path]()
                    self._send(200 if ok else 503, b"ok\n" if ok else unhealthy, "text/plain")
                else:
                    self._send(404, f"try {paths}\n".encode(), "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the process's own log

        self._server = _bind(host, port, Handler, fixed=fixed)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.port

    def start(self) -> HealthServer:
        """Serve in the background; return self."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.stop()


def port_is_fixed(port: int, default: int, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``port`` was asked for: DAGYO_METRICS_PORT is set, or it is not the default."""
    environ = os.environ if environ is None else environ
    return port != default or bool(environ.get(ENV_METRICS_PORT, "").strip())


def _bind(
    host: str, port: int, handler: type[BaseHTTPRequestHandler], *, fixed: bool
) -> HttpServer:
    try:
        return HttpServer(host, port, handler, name=HEALTH_THREAD)
    except OSError as e:
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
            raise DagyoError(
                f"{ENV_METRICS_ADDR}={host!r}: no interface of this machine has that address "
                f"({e.strerror or e}); set it to one of its addresses, 127.0.0.1 or 0.0.0.0"
            ) from None
        if e.errno != errno.EADDRINUSE:
            raise DagyoError(
                f"cannot serve health and metrics on {host} port {port}: {e}"
            ) from None
        if fixed:
            raise DagyoError(
                f"port {port} is already in use ({ENV_METRICS_PORT}={port}): set "
                f"{ENV_METRICS_PORT} to a free port, or to 0 for any free one"
            ) from None
    return HttpServer(host, 0, handler, name=HEALTH_THREAD)


def serve_health(
    port: int,
    *,
    host: str = DEFAULT_METRICS_HOST,
    metrics: ExecutorMetrics,
    live: Callable[[], bool],
    ready: Callable[[], bool],
    fixed: bool = True,
) -> HealthServer:
    """The executor's endpoints on ``host``:``port``, served in a daemon thread.

    ``/metrics`` serves the executor's own metrics, then those progdef code registers in
    prometheus_client's global registry.
    """
    return HealthServer(
        port,
        host=host,
        metrics=lambda: generate_latest(metrics.registry) + generate_latest(REGISTRY),
        live=live,
        ready=ready,
        fixed=fixed,
    ).start()
