"""The scheduler's Prometheus metrics and the tiny HTTP server that serves them.

Each :class:`SchedulerMetrics` has its own registry (no process-wide singleton), so tests
can run several schedulers in one process. Gauges that describe the current state (flows
by state, jobs running, heartbeat age) are read from the scheduler when scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class SchedulerMetrics:
    """The scheduler's metrics.

    Attributes:
        panics: failure reports received, by progdef and kind.
        exported_items: items read off export queues.
        flows_ended: flows that ended, by end state.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.panics = Counter(
            "dagyo_scheduler_panics",
            "Failure reports that failed or joined a flow's failure, by progdef and kind.",
            ["progdef", "kind"],
            registry=self.registry,
        )
        self.exported_items = Counter(
            "dagyo_scheduler_exported_items",
            "Exported items the scheduler read off export queues.",
            registry=self.registry,
        )
        self.flows_ended = Counter(
            "dagyo_scheduler_flows_ended",
            "Flows that ended, by end state.",
            ["state"],
            registry=self.registry,
        )

    def observe(
        self,
        *,
        flows_by_state: Callable[[], Mapping[str, int]],
        jobs_running: Callable[[], int],
        heartbeat_ages: Callable[[], Mapping[str, float]],
    ) -> None:
        """Read the current-state gauges from these callables at every scrape."""
        self.registry.register(_StateCollector(flows_by_state, jobs_running, heartbeat_ages))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(
        self,
        flows_by_state: Callable[[], Mapping[str, int]],
        jobs_running: Callable[[], int],
        heartbeat_ages: Callable[[], Mapping[str, float]],
    ) -> None:
        self._flows_by_state = flows_by_state
        self._jobs_running = jobs_running
        self._heartbeat_ages = heartbeat_ages

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        flows = GaugeMetricFamily(
            "dagyo_scheduler_flows", "Flows the scheduler knows, by state.", labels=["state"]
        )
        for state, count in self._flows_by_state().items():
            flows.add_metric([state], count)
        yield flows
        yield GaugeMetricFamily(
            "dagyo_scheduler_jobs_running",
            "Jobs that started and have not ended, in running flows.",
            value=self._jobs_running(),
        )
        ages = GaugeMetricFamily(
            "dagyo_scheduler_heartbeat_age_seconds",
            "Seconds since each executor's last heartbeat or event.",
            labels=["executor"],
        )
        for executor, age in sorted(self._heartbeat_ages().items()):
            ages.add_metric([executor], age)
        yield ages


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP, on a thread of its own.

    Args:
        port: the TCP port (0 picks a free one; see ``port`` after ``start``).
        metrics: what ``/metrics`` serves.
        healthy: ``/healthz`` answers 200 while it returns True, else 503.
    """

    def __init__(
        self, *, port: int, metrics: SchedulerMetrics, healthy: Callable[[], bool]
    ) -> None:
        metrics_ref, healthy_ref = metrics, healthy

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, metrics_ref.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = healthy_ref()
                    body = b"ok\n" if ok else b"the broker connection is down\n"
                    self._answer(200 if ok else 503, body, "text/plain")
                else:
                    self._answer(404, b"try /metrics or /healthz\n", "text/plain")

            def _answer(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the scheduler's log

        self._server = ThreadingHTTPServer(("", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dagyo-scheduler-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
