"""What job events do to the flows' records: a job started, ended, or sent items.

Each function runs under the flow table's lock, changes the flow's record (node states,
times, items, errors) and its liveness marks (``moved_at``, ``blocked``), and returns the
flows changed; the lifecycle then stores them and tells their watchers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import scheduler.service.progress as progress
from executor.core.constants import JOB_BROKER, JOB_STOPPED
from executor.pb.dagyo.v1.events_pb2 import JobEnded, JobRef, JobStarted
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_LOST,
    FAILURE_KIND_PANIC,
    FAILURE_KIND_STOPPED,
    FailureReport,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flows import FlowTable
from scheduler.service.flowstate import (
    NODE_ENDED,
    NODE_FAILED,
    NODE_PENDING,
    NODE_RUNNING,
    ActiveFlow,
)
from scheduler.service.limits import short_name
from scheduler.service.metrics import SchedulerMetrics


def node_of(
    table: FlowTable, flow_id: str, name: str
) -> tuple[ActiveFlow | None, pb.NodeProgress | None]:
    """A flow that is not ending, and its node ``name`` (None for either when unknown)."""
    flow = table.flows.get(flow_id)
    if flow is None or flow.runtime.finishing:
        return None, None
    return flow, flow.node(name)


def job_started(
    table: FlowTable, started: JobStarted, at: float, metrics: SchedulerMetrics
) -> ActiveFlow | None:
    """A pending job started (at Unix time ``at``): its node runs; the flow changed."""
    flow, node = node_of(table, started.job.flow_id, started.job.node)
    if flow is None or node is None or node.state != NODE_PENDING:
        return None
    node.state = NODE_RUNNING
    node.executor = short_name(started.executor)
    progress.started(node, at, metrics)
    flow.moved_at = flow.named[node.node] = time.monotonic()
    return flow


def job_ended(
    table: FlowTable, ended: JobEnded, at: float, metrics: SchedulerMetrics
) -> ActiveFlow | None:
    """A job ended: its node takes its final counts, and ended when the job closed its
    outputs without panic in a flow that is not ending; the flow changed.

    A flow that is ending (cancelled, failed) still takes the final counts of its jobs,
    stopped or panicked: its record adds up only with every job's last word.
    """
    flow = table.flows.get(ended.job.flow_id)
    node = flow.node(ended.job.node) if flow is not None else None
    if flow is None or node is None or node.node in flow.counted:
        return None
    flow.counted.add(node.node)
    if ended.outcome or flow.runtime.finishing or node.state in (NODE_ENDED, NODE_FAILED):
        progress.counted(flow.record, node, ended.items_sent, ended.items_received, metrics)
        node.items_sent = sum(ended.items_sent.values())
        node.errors_sent = _errors_sent(flow, node, ended.items_sent)
        return flow
    node.state = NODE_ENDED
    node.executor = node.executor or short_name(ended.executor)
    flow.exported_at = max(flow.exported_at, time.monotonic())  # exports may still come
    progress.ended(
        flow.record,
        node,
        at,
        metrics,
        items_sent=ended.items_sent,
        items_received=ended.items_received,
    )
    node.items_sent = sum(ended.items_sent.values())
    node.errors_sent = _errors_sent(flow, node, ended.items_sent)
    flow.moved_at = time.monotonic()
    flow.blocked.pop(node.node, None)
    return flow


def jobs_heard(
    table: FlowTable, jobs: Iterable[JobRef], metrics: SchedulerMetrics
) -> list[ActiveFlow]:
    """The running jobs a heartbeat names, with their live counts: the flows that moved."""
    changed: dict[str, ActiveFlow] = {}
    for job in jobs:
        flow, node = node_of(table, job.flow_id, job.node)
        if flow is None or node is None or node.state != NODE_RUNNING:
            continue
        flow.named[node.node] = time.monotonic()
        flow.blocked[node.node] = job.blocked_s
        if progress.counted(flow.record, node, job.items_sent, job.items_received, metrics):
            flow.moved_at = time.monotonic()
            changed[flow.id] = flow
        sent = sum(job.items_sent.values())
        if sent != node.items_sent:
            node.items_sent = sent
            node.errors_sent = _errors_sent(flow, node, job.items_sent)
            flow.moved_at = time.monotonic()
            changed[flow.id] = flow
    return list(changed.values())


def _errors_sent(flow: ActiveFlow, node: pb.NodeProgress, items_sent: Mapping[str, int]) -> int:
    """Of a node's items sent per port, those sent to its progdef's error port."""
    return items_sent.get(flow.runtime.error_ports.get(node.node, ""), 0)


def awaited_counts(flow: ActiveFlow) -> list[str]:
    """The nodes of an ending flow whose job started and has not sent its final counts
    yet (a lost job's never will)."""
    failure = flow.record.failure
    lost = failure.node if failure.kind == FAILURE_KIND_LOST else None
    return [
        n.node
        for n in flow.record.nodes
        if n.started and n.node not in flow.counted and n.node != lost
    ]


def job_failed(table: FlowTable, ended: JobEnded) -> tuple[ActiveFlow, FailureReport] | None:
    """A job ended otherwise than by returning: the flow and the failure to end it with.

    None when its flow is not running here or is ending (a Stop this scheduler sent, or
    a failure it already took). A job stopped by a Stop while its flow runs was stopped
    by a Stop this scheduler did not send: the flow fails, naming it.
    """
    flow, node = node_of(table, ended.job.flow_id, ended.job.node)
    if flow is None or node is None or node.state in (NODE_ENDED, NODE_FAILED):
        return None
    executor = short_name(ended.executor) if ended.executor else node.executor
    report = FailureReport(
        flow_id=flow.id,
        node=node.node,
        progdef=node.progdef,
        executor=executor,
        kind=_FAILURE_KINDS.get(ended.outcome, FAILURE_KIND_PANIC),  # type: ignore[arg-type]
        error=ended.reason or f"job {node.node} ended ({ended.outcome})",
        time=time.time(),
    )
    if ended.outcome == JOB_STOPPED:
        report.error = (
            f"job {node.node} (progdef {node.progdef}) on executor {executor} was "
            f"{ended.reason or 'stopped by a Stop'}, which this scheduler did not send: "
            "someone holding the broker's credentials published it (docs/security.md); "
            "resubmit the flow"
        )
    return flow, report


_FAILURE_KINDS = {
    JOB_STOPPED: FAILURE_KIND_STOPPED,
    JOB_BROKER: FAILURE_KIND_BROKER,
}
