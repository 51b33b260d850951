"""The hook point around a submit: what crosses every submit (tracing, metrics) hangs here.

A :class:`SubmitHook` wraps the start of each accepted flow, after it is checked, admitted
and planned: the flow service opens every hook's context, in order, around the start, so
the use case itself names none of them (dramatiq's middleware, for one call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from executor.core.tracing import Tracing
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.service.metrics import SchedulerMetrics


@dataclass(frozen=True)
class Submission:
    """A flow being started.

    Attributes:
        flow_id: its id.
        name: its name.
        tenant: whose flow it is (empty when the scheduler runs open).
        jobs: its job descriptors, before they are published (a hook may add to them).
    """

    flow_id: str
    name: str
    tenant: str
    jobs: Sequence[Job]


class SubmitHook(Protocol):
    """Something done around every submit."""

    def around_submit(self, submission: Submission) -> AbstractContextManager[None]:
        """The context the flow's start runs in; an error raised by the start goes
        through it."""
        ...


class TracingHook:
    """An OpenTelemetry span per submit, its trace context put into every job.

    Args:
        tracing: the scheduler's tracing (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set).
    """

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def around_submit(self, submission: Submission) -> AbstractContextManager[None]:
        """The span of this submit."""
        return self._tracing.submit(
            flow_id=submission.flow_id,
            name=submission.name,
            tenant=submission.tenant,
            jobs=submission.jobs,
        )


class MetricsHook:
    """How long each submit took to start its flow, and whether it did
    (``dagyo_scheduler_submit_seconds``).

    Args:
        metrics: the scheduler's metrics.
        clock: monotonic seconds.
    """

    def __init__(
        self, metrics: SchedulerMetrics, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._metrics = metrics
        self._clock = clock

    @contextmanager
    def around_submit(self, submission: Submission) -> Iterator[None]:
        """Time the start; an error raised by it counts as ``failed``."""
        started, outcome = self._clock(), "failed"
        try:
            yield
            outcome = "started"
        finally:
            self._metrics.submit_duration.labels(outcome).observe(self._clock() - started)
