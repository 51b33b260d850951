"""OpenTelemetry traces: a flow is one trace, a span for its submit on the scheduler and
one for each job on its executor, linked by the W3C trace context the job descriptor
carries; a panic is a span event with its traceback. Tested with the SDK's in-memory
exporter, and on a real cluster whose executors export over OTLP to a receiver here."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from executor.core.tracing import Tracing
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from executor.pb.dagyo.v1.job_pb2 import Job
from tests.cluster import LocalCluster
from tests.conftest import EXAMPLES, ROOT
from tests.waiting import eventually

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
TRACEBACK = 'Traceback (most recent call last):\n  File "main.py", line 9\nValueError: boom\n'
PANIC_FLOW = {
    "name": "boom",
    "nodes": {"fuse": {"progdef": "explode"}, "total": {"progdef": "count"}},
    "edges": [{"from": "fuse.items", "to": "total.items"}],
    "consts": [{"to": "fuse.items", "values": [{"text": "ok"}, {"text": "panic, as asked"}]}],
    "exports": {"total": "total.total"},
}


def test_the_submit_span_is_the_parent_of_every_job_span_through_the_descriptor() -> None:
    exporter = InMemorySpanExporter()
    scheduler = Tracing.with_exporter(exporter, "dagyo-scheduler")
    executor = Tracing.with_exporter(exporter, "dagyo-executor-greet")
    jobs = [Job(flow_id="f1", node=n, progdef="greet", version="v1") for n in ("a", "b")]
    with scheduler.submit(flow_id="f1", name="hello", tenant="acme", jobs=jobs):
        pass
    for job in jobs:  # what an executor gets: the descriptor, serialized
        assert TRACEPARENT.fullmatch(job.trace_context["traceparent"])
        received = Job.FromString(job.SerializeToString())
        span = executor.start_job(received, executor="greet-host-1")
        failure = None
        if job.node == "b":
            failure = FailureReport(
                error="ValueError: boom", traceback=TRACEBACK, kind=FAILURE_KIND_PANIC
            )
        executor.end_job(
            span,
            outcome="panicked" if failure else "ended",
            items_in={"name": 3},
            items_out={"greeting": 2},
            failure=failure,
        )

    submit, a, b = exporter.get_finished_spans()
    assert submit.name == "dagyo.submit" and submit.parent is None
    assert dict(submit.attributes or {}) == {
        "dagyo.flow": "f1",
        "dagyo.flow_name": "hello",
        "dagyo.tenant": "acme",
        "dagyo.jobs": 2,
    }
    for span, node in ((a, "a"), (b, "b")):
        assert span.name == "dagyo.job"
        assert span.context.trace_id == submit.context.trace_id
        assert span.parent is not None and span.parent.span_id == submit.context.span_id
        attributes = dict(span.attributes or {})
        assert {k: attributes[k] for k in ("dagyo.flow", "dagyo.node", "dagyo.progdef")} == {
            "dagyo.flow": "f1",
            "dagyo.node": node,
            "dagyo.progdef": "greet",
        }
        assert attributes["dagyo.executor"] == "greet-host-1"
        assert (attributes["dagyo.items_in"], attributes["dagyo.items_out"]) == (3, 2)
        assert attributes["dagyo.items_in.name"] == 3
    assert a.events == () and a.status.status_code == StatusCode.UNSET
    (panic,) = b.events
    assert panic.name == "panic"
    assert dict(panic.attributes or {})["exception.stacktrace"] == TRACEBACK
    assert dict(panic.attributes or {})["exception.message"] == "ValueError: boom"
    assert b.status.status_code == StatusCode.ERROR


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
    )


def test_without_an_endpoint_nothing_of_opentelemetry_is_imported() -> None:
    done = run_python(
        "import sys\n"
        "import executor._runtime.service, scheduler.service.server\n"
        "from executor.core.tracing import Tracing\n"
        "from executor.pb.dagyo.v1.job_pb2 import Job\n"
        "tracing = Tracing.from_env('dagyo-scheduler')\n"
        "job = Job(flow_id='f', node='n')\n"
        "with tracing.submit(flow_id='f', name='x', tenant='', jobs=[job]):\n"
        "    pass\n"
        "span = tracing.start_job(job, executor='e')\n"
        "tracing.end_job(span, outcome='ended', items_in={}, items_out={})\n"
        "print(tracing.enabled, dict(job.trace_context), span,\n"
        "      sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False {} None []\n"


def test_an_endpoint_without_the_extra_says_how_to_install_it() -> None:
    done = run_python(
        "import logging, sys\n"
        "logging.basicConfig()\n"
        "sys.modules['opentelemetry'] = None  # as if dagyo[otel] were not installed\n"
        "from executor.core.tracing import Tracing\n"
        "print(Tracing.from_env('dagyo-scheduler').enabled)\n",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set (http://127.0.0.1:4318)" in done.stderr
    assert "pip install 'dagyo[otel]' to export traces" in done.stderr


# --- on a real cluster ------------------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver on the loopback: what a collector would get."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def jobs_of(self, flow_id: str, count: int) -> dict[str, Any]:

        def spans() -> dict[str, Any]:
            with self.lock:
                return {
                    attributes(s)["dagyo.node"]: s
                    for s in self.spans
                    if attributes(s).get("dagyo.flow") == flow_id
                }

        return eventually(
            spans,
            until=lambda found: len(found) >= count,
            what=f"{count} job spans of {flow_id} exported",
        )


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module")
def submit_spans() -> InMemorySpanExporter:
    """The cluster scheduler's submit spans."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def cluster(
    broker_url: str,
    receiver: Receiver,
    submit_spans: InMemorySpanExporter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        broker_url,
        tmp_path_factory.mktemp("traced"),
        names=("source", "greet", "void_sink", "explode", "count"),
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    ).start(tracing=Tracing.with_exporter(submit_spans, "dagyo-scheduler"))
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_flow_is_one_trace_from_its_submit_to_each_job_on_its_executor(
    cluster: LocalCluster, receiver: Receiver, submit_spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    exporter = submit_spans
    hello = json.loads((EXAMPLES / "hello.json").read_text())
    ok = cluster.submit(hello)
    assert cluster.wait(ok).ended
    boom = cluster.submit(PANIC_FLOW)
    cluster.wait(boom)

    submits = {dict(s.attributes or {})["dagyo.flow"]: s for s in exporter.get_finished_spans()}
    assert submits[ok].name == "dagyo.submit"
    assert dict(submits[ok].attributes or {})["dagyo.flow_name"] == "hello"
    jobs = receiver.jobs_of(ok, 3)
    assert set(jobs) == {"names", "hi", "out"}
    for node, span in jobs.items():
        assert span.name == "dagyo.job"
        assert int.from_bytes(span.trace_id, "big") == submits[ok].context.trace_id
        assert int.from_bytes(span.parent_span_id, "big") == submits[ok].context.span_id
        found = attributes(span)
        assert found["dagyo.progdef"] == hello["nodes"][node]["progdef"]
        assert found["dagyo.executor"].startswith(found["dagyo.progdef"] + "-")
        assert found["dagyo.outcome"] == "ended"
    assert (
        attributes(jobs["hi"])["dagyo.items_in"],
        attributes(jobs["hi"])["dagyo.items_out"],
    ) == (
        3,
        3,
    )

    # Both jobs end (count is stopped): whichever span the executors export first.
    panicked = receiver.jobs_of(boom, 2)["fuse"]
    assert int.from_bytes(panicked.trace_id, "big") == submits[boom].context.trace_id
    (event,) = panicked.events
    event_attributes = {a.key: a.value.string_value for a in event.attributes}
    assert event.name == "panic"
    assert "panic, as asked" in event_attributes["exception.message"]
    assert event_attributes["exception.stacktrace"].startswith("Traceback")
    assert panicked.status.code == panicked.status.STATUS_CODE_ERROR
