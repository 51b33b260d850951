"""OpenTelemetry traces of flows: a span for each submit, one for each job on its executor.

A flow is one trace. The scheduler's span of the submit puts its W3C trace context
(``traceparent``, ``tracestate``) into every job descriptor (``Job.trace_context``); each
executor's span of a job is its child, with the flow, node, progdef, executor and the items
in and out as attributes, and a panic as a span event carrying the traceback.

Tracing is off unless the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; then spans go out over OTLP (HTTP and
protobuf, configured by the standard ``OTEL_*`` variables) and the optional extra
``dagyo[otel]`` must be installed. Off, nothing of OpenTelemetry is imported and every call
here returns at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from executor.pb.dagyo.v1.failure_pb2 import FailureKind, FailureReport
from executor.pb.dagyo.v1.job_pb2 import Job

log = logging.getLogger("dagyo.tracing")

ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
INSTALL_EXTRA = "pip install 'dagyo[otel]'"

SUBMIT_SPAN = "dagyo.submit"
JOB_SPAN = "dagyo.job"
PANIC_EVENT = "panic"


class Tracing:
    """Where a process's spans go; a Tracing made without a tracer does nothing.

    Make one with :meth:`from_env` (a service) or :meth:`with_exporter` (tests, with the
    SDK's ``InMemorySpanExporter``).
    """

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider

    @property
    def enabled(self) -> bool:
        """True when spans are made and exported."""
        return self._tracer is not None

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> Tracing:
        """Traces exported over OTLP when the environment names an endpoint, else none.

        Args:
            service: the ``service.name`` of the spans (``OTEL_SERVICE_NAME`` overrides it).

        A set endpoint without the extra installed logs one warning saying to install it,
        and the process runs untraced.
        """
        environ = os.environ if environ is None else environ
        if not (environ.get(ENV_OTLP_ENDPOINT) or environ.get(ENV_OTLP_TRACES_ENDPOINT)):
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as e:
            endpoint = environ.get(ENV_OTLP_TRACES_ENDPOINT) or environ.get(ENV_OTLP_ENDPOINT)
            log.warning(
                "%s is set (%s) but OpenTelemetry is not installed (%s): %s to export traces",
                ENV_OTLP_ENDPOINT,
                endpoint,
                e.name or e,
                INSTALL_EXTRA,
            )
            return cls()
        # The exporter reads the OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout).
        return cls._with_processor(BatchSpanProcessor(OTLPSpanExporter()), service)

    @classmethod
    def with_exporter(cls, exporter: Any, service: str) -> Tracing:
        """Spans handed to ``exporter`` as each one ends (e.g. an InMemorySpanExporter)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls._with_processor(SimpleSpanProcessor(exporter), service)

    @classmethod
    def _with_processor(cls, processor: Any, service: str) -> Tracing:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider

        # A provider of its own, not the process-wide one: several schedulers and
        # executors may share a process (tests), and progdef code may set its own.
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        provider.add_span_processor(processor)
        return cls(provider.get_tracer("dagyo"), provider)

    @contextmanager
    def submit(
        self, *, flow_id: str, name: str, tenant: str, jobs: Iterable[Job]
    ) -> Iterator[None]:
        """A span around a flow's submit; its trace context goes into every job of it."""
        if self._tracer is None:
            yield
            return
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        attributes = {"dagyo.flow": flow_id, "dagyo.flow_name": name, "dagyo.tenant": tenant}
        with self._tracer.start_as_current_span(SUBMIT_SPAN, attributes=attributes) as span:
            carrier: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
            count = 0
            for job in jobs:
                job.trace_context.update(carrier)
                count += 1
            span.set_attribute("dagyo.jobs", count)
            yield

    def start_job(self, descriptor: Job, *, executor: str) -> Any:
        """Start the span of a job, the child of its flow's submit; None when off."""
        if self._tracer is None:
            return None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(dict(descriptor.trace_context))
        return self._tracer.start_span(
            JOB_SPAN,
            context=parent,
            attributes={
                "dagyo.flow": descriptor.flow_id,
                "dagyo.node": descriptor.node,
                "dagyo.progdef": descriptor.progdef,
                "dagyo.version": descriptor.version,
                "dagyo.executor": executor,
            },
        )

    def end_job(
        self,
        span: Any,
        *,
        outcome: str,
        items_in: Mapping[str, int],
        items_out: Mapping[str, int],
        failure: FailureReport | None = None,
    ) -> None:
        """End a job's span with its items in and out; a panic becomes a span event."""
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("dagyo.outcome", outcome)
        span.set_attribute("dagyo.items_in", sum(items_in.values()))
        span.set_attribute("dagyo.items_out", sum(items_out.values()))
        for port, count in items_in.items():
            span.set_attribute(f"dagyo.items_in.{port}", count)
        for port, count in items_out.items():
            span.set_attribute(f"dagyo.items_out.{port}", count)
        if failure is not None:
            span.add_event(
                PANIC_EVENT,
                {
                    "exception.type": failure.error.partition(":")[0],
                    "exception.message": failure.error,
                    "exception.stacktrace": failure.traceback,
                    "dagyo.failure_kind": FailureKind.Name(failure.kind),
                },
            )
            span.set_status(Status(StatusCode.ERROR, failure.error))
        span.end()

    def shutdown(self) -> None:
        """Export the spans still waiting, then stop exporting."""
        if self._provider is not None:
            self._provider.shutdown()
