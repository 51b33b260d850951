"""The executor's HTTP endpoint: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest


class ExecutorMetrics:
    """The executor's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs_running = Gauge(
            "dagyo_executor_jobs_running", "Jobs running now", registry=self.registry
        )
        self.jobs = Counter(
            "dagyo_executor_jobs", "Jobs finished, by outcome", ["outcome"], registry=self.registry
        )
        self.panics = Counter("dagyo_executor_panics", "Jobs that panicked", registry=self.registry)
        self.items = Counter(
            "dagyo_executor_items_sent", "Items sent, per edge", ["edge"], registry=self.registry
        )
        self.frames = Counter(
            "dagyo_executor_frames_sent", "Frames sent, per edge", ["edge"], registry=self.registry
        )
        self.heartbeat_age = Gauge(
            "dagyo_executor_heartbeat_age_seconds",
            "Seconds since the last heartbeat was sent",
            registry=self.registry,
        )


def serve_health(
    port: int, *, metrics: ExecutorMetrics, live: Callable[[], bool], ready: Callable[[], bool]
) -> ThreadingHTTPServer:
    """Serve the endpoints on ``port`` (0: any free port) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path == "/metrics":
                # The executor's own metrics, then those progdef code registers globally.
                body = generate_latest(metrics.registry) + generate_latest(REGISTRY)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok = live() if self.path == "/healthz" else ready()
                self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
            else:
                self._send(404, b"try /healthz, /readyz or /metrics\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the executor's own log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="dagyo-health", daemon=True).start()
    return server
