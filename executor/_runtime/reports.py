"""What an executor tells the scheduler of its jobs: each one's progress (in its
heartbeats) and end, the end sent until the broker has it.

Every job an executor took ends with exactly one ``Event{ended}`` (routing key
``job.ended.{shard}``) with its final counts, whose ``outcome`` says how: empty (it ended),
``panicked``, ``stopped`` (its flow's Stop), ``broker`` (its connection lost, a call
unanswered, a stream gone), ``refused`` (not a job for this executor) or ``executor`` (a
drain past its grace period), with the reason. Every outcome but the empty one and
``stopped`` is also a ``FailureReport`` on the flow's failure exchange,
which watchers follow. Both wait for the broker's confirm: a report that could not go out
(the connection lost or blocked by a broker alarm) is kept and sent again once the
executor is connected, and the job counts as running in its heartbeats until then, so the
scheduler is never left with a job that ended unheard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from executor._runtime.job import JobRun, StopCause, failure_report
from executor.core.constants import (
    EVENTS_EXCHANGE,
    FAILURES_EXCHANGE,
    JOB_BROKER,
    JOB_ENDED,
    JOB_EXECUTOR,
    JOB_PANICKED,
    JOB_REFUSED,
    JOB_STOPPED,
    failure_key,
    job_ended_key,
    parse_mailbox,
)
from executor.core.health import ExecutorMetrics
from executor.core.progdef import Progdef
from executor.core.tracing import Tracing
from executor.pb.dagyo.v1.events_pb2 import Event, JobEnded, JobRef
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from executor.pb.dagyo.v1.job_pb2 import Job

log = logging.getLogger("dagyo.executor")

# publish(exchange, routing key, message): publishes with a confirm on the I/O thread;
# raises when the broker did not take it.
Publish = Callable[[str, str, Message], None]


@dataclass
class JobEnd:
    """One job's end as it is reported: its ended event, and its failure report if any."""

    key: tuple[str, str]
    ended: JobEnded
    failure: FailureReport | None = None
    failure_sent: bool = False
    slot_freed: bool = False

    @property
    def outcome(self) -> str:
        """``ended``, ``stopped``, or ``panicked`` (every failure), for metrics and spans."""
        if self.ended.outcome == JOB_ENDED:
            return "ended"
        return "stopped" if self.ended.outcome == JOB_STOPPED else "panicked"


def served_version(mailbox: str, progdef: Progdef) -> str:
    """The progdef version an executor pulling ``mailbox`` serves: the mailbox's own
    (``dagyo.mailbox.{progdef}.{version}``), else the progdef's."""
    named = parse_mailbox(mailbox)
    if named is not None and named[0] == progdef.name:
        return named[1]
    return progdef.version


def refused(job: Job, progdef: str, version: str, mailbox: str) -> str:
    """Why an executor of ``progdef`` at ``version`` must not run ``job``; empty: it may."""
    if job.progdef == progdef and job.version == version:
        return ""
    return (
        f"the job is for progdef {job.progdef or '(none)'} version {job.version or '(none)'}, "
        f"but this executor serves progdef {progdef} version {version} (mailbox {mailbox}): "
        "refused unrun; it was published to the wrong mailbox (by hand, or by a scheduler "
        "with another catalogue)"
    )


def job_end(
    run: JobRun, failure: FailureReport | None, *, executor_id: str, refusal: str = ""
) -> JobEnd:
    """How ``run`` ended, from what :func:`executor._runtime.job.execute` returned and its
    stop, or the reason the executor refused to run it."""
    descriptor = run.descriptor
    if refusal:
        failure = failure_report(descriptor, executor=executor_id, error=refusal)
    ended = JobEnded(
        job=JobRef(flow_id=descriptor.flow_id, node=descriptor.node),
        executor=executor_id,
        items_sent=run.items_sent(),
        items_received=run.items_received(),
    )
    if failure is None and run.stop_reason:
        kind = run.stop_cause.failure_kind if run.stop_cause else FAILURE_KIND_PANIC
        failure = failure_report(descriptor, executor=executor_id, error=run.stop_reason, kind=kind)
        broker = run.stop_cause is StopCause.BROKER
        ended.outcome = JOB_BROKER if broker else JOB_EXECUTOR
    elif failure is not None:
        ended.outcome = JOB_REFUSED if refusal else JOB_PANICKED
    elif run.stop.is_set():
        ended.outcome = JOB_STOPPED
        ended.reason = f"stopped by a Stop for flow {descriptor.flow_id} ({run.flow_stopped})"
    if failure is not None:
        ended.reason = failure.error
    return JobEnd(run.key, ended, failure)


def progress(run: JobRun, metrics: ExecutorMetrics) -> JobRef:
    """A running job's live progress for a heartbeat; its items counted in the metrics."""
    sent, received = run.items_sent(), run.items_received()
    metrics.count_items(run.descriptor.node, sent, received, run.counted)
    flow_id, node = run.key
    return JobRef(
        flow_id=flow_id,
        node=node,
        items_sent=sent,
        items_received=received,
        blocked_s=run.blocked_s(),
    )


def observe(end: JobEnd, run: JobRun, metrics: ExecutorMetrics, tracing: Tracing) -> None:
    """Count a job's end in the executor's metrics and end its trace span."""
    node = run.descriptor.node
    sent, received = run.items_sent(), run.items_received()
    metrics.count_items(node, sent, received, run.counted)
    metrics.jobs.labels(end.outcome).inc()
    metrics.job_duration.labels(end.outcome).observe(time.monotonic() - run.taken)
    tracing.end_job(
        run.span, outcome=end.outcome, items_in=received, items_out=sent, failure=end.failure
    )
    if end.failure is not None:
        metrics.panics.inc()
    elif end.outcome == "ended":
        frames = run.frames_sent()
        for port in sent:
            metrics.frames.labels(f"{node}.{port}").inc(frames[port])


@dataclass
class JobReports:
    """The job ends not yet confirmed by the broker (thread-safe).

    Args:
        publish: publishes one message with a confirm (I/O thread).
        free_slot: gives the job's slot back to the mailbox (I/O thread), once per job.
        sent: called (I/O thread) once a job's end is wholly reported.
    """

    publish: Publish
    free_slot: Callable[[], None]
    sent: Callable[[tuple[str, str]], None]
    _pending: dict[tuple[str, str], JobEnd] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, end: JobEnd) -> None:
        """Keep a job's end until it is sent (any thread; :meth:`send` sends it)."""
        with self._lock:
            self._pending[end.key] = end

    def send(self) -> None:
        """Free the slots of ended jobs and send their reports, oldest first (I/O thread).

        A report the broker did not take stays for the next call (the executor calls again
        when it is connected again, and every heartbeat interval).

        Raises:
            Exception: what pika raised for a lost connection (the I/O thread reconnects).
        """
        with self._lock:
            pending = list(self._pending.values())
        for end in pending:
            if not end.slot_freed:
                end.slot_freed = True
                try:
                    self.free_slot()
                except Exception as e:  # its mailbox channel is gone: a new one counts again
                    log.warning("could not pull the next job: %s", e)
            flow_id = end.ended.job.flow_id
            if end.failure is not None and not end.failure_sent:
                self.publish(FAILURES_EXCHANGE, failure_key(flow_id), end.failure)
                end.failure_sent = True
            self.publish(
                EVENTS_EXCHANGE, job_ended_key(flow_id), Event(time=time.time(), ended=end.ended)
            )
            with self._lock:
                self._pending.pop(end.key, None)
            self.sent(end.key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
