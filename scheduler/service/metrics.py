"""The scheduler's Prometheus metrics, served by the executor's HTTP server.

Each :class:`SchedulerMetrics` has its own registry (no process-wide singleton), so tests
can run several schedulers in one process. Gauges that describe the current state (flows
by state, jobs running, heartbeat age) are read from the scheduler when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from executor.core.constants import DEFAULT_METRICS_HOST
from executor.core.health import HealthServer

# Seconds: from a job that takes milliseconds to a flow that runs for hours.
DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
# Seconds a job waits in its mailbox: near 0 while executors keep up, then seconds to minutes.
QUEUE_WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


class SchedulerMetrics:
    """The scheduler's metrics (docs/observability.md lists them all).

    Attributes:
        panics: failure reports received, by progdef and kind.
        exported_items: items read off export queues.
        flows_ended: flows that ended, by end state.
        flow_duration: seconds from submit to end, by end state.
        job_duration: seconds from a job's start to its end, by progdef and outcome.
        queue_wait: seconds from a job's publish to its start, by progdef.
        submit_duration: seconds a submit took to start its flow, by outcome.
        edge_items: items sent into each edge, by flow name and edge (``rate()`` of it is
            items per second).
        cache_hits / cache_misses: cacheable nodes of submitted flows whose results were
            cached (not run) or not, by progdef.
        cache_replayed_bytes: bytes of cached streams replayed into flows.
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
        self.flow_duration = Histogram(
            "dagyo_scheduler_flow_duration_seconds",
            "Seconds from a flow's submit to its end, by end state.",
            ["state"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "dagyo_scheduler_job_duration_seconds",
            "Seconds from a job's start to its end, by progdef and outcome.",
            ["progdef", "outcome"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "dagyo_scheduler_queue_wait_seconds",
            "Seconds from a job's publish to its mailbox to its start on an executor, by progdef.",
            ["progdef"],
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.submit_duration = Histogram(
            "dagyo_scheduler_submit_seconds",
            "Seconds a submit took to start its flow (record it, declare its queues, publish "
            "or hold its jobs), by outcome (started, failed).",
            ["outcome"],
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.edge_items = Counter(
            "dagyo_scheduler_edge_items",
            "Items sent into each edge of running flows, by flow name and edge "
            "('node.port -> node.port'), counted live from heartbeats.",
            ["flow", "edge"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "dagyo_scheduler_cache_hits",
            "Cacheable nodes not run, their results taken from the cache, by progdef.",
            ["progdef"],
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "dagyo_scheduler_cache_misses",
            "Cacheable nodes run for want of a whole cached result, by progdef.",
            ["progdef"],
            registry=self.registry,
        )
        self.cache_replayed_bytes = Counter(
            "dagyo_scheduler_cache_replayed_bytes",
            "Bytes of cached streams the scheduler replayed into flows.",
            registry=self.registry,
        )

    def flow_ended(self, state: str, duration_s: float) -> None:
        """Count a flow that ended in ``state`` after ``duration_s`` seconds."""
        self.flows_ended.labels(state).inc()
        self.flow_duration.labels(state).observe(max(0.0, duration_s))

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


class MetricsServer(HealthServer):
    """The scheduler's ``/metrics`` and ``/healthz``: the executor's one HTTP server.

    Args:
        port: the TCP port (0 picks a free one; see ``port``).
        host: the interface to listen on (``DAGYO_METRICS_ADDR``).
        metrics: what ``/metrics`` serves.
        healthy: ``/healthz`` answers 200 while it returns True, else 503.
        fixed: the port was asked for: a busy one is an error, else a free one is taken.

    Raises:
        DagyoError: when ``fixed`` and the port is in use, naming the port and the variable.
    """

    def __init__(
        self,
        *,
        port: int,
        host: str = DEFAULT_METRICS_HOST,
        metrics: SchedulerMetrics,
        healthy: Callable[[], bool],
        fixed: bool = True,
    ) -> None:
        super().__init__(
            port,
            host=host,
            metrics=metrics.render,
            live=healthy,
            fixed=fixed,
            unhealthy=b"the broker connection is down\n",
        )
