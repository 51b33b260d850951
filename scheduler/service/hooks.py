"""The hook point around a submit: what crosses every submit (tracing, metrics) hangs here.

A :class:`SubmitHook` wraps the start of each accepted flow, after it is checked, admitted
and planned: the flow service opens every hook's context, in order, around the start, so
the use case itself names none of them (dramatiq's middleware, for one call).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from executor.core.tracing import Tracing
from executor.pb.dagyo.v1.job_pb2 import Job


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
