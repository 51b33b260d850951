"""Live progress in a flow record: item counts per node and per edge, and job times.

The lifecycle calls these as events arrive: a heartbeat's counts (:func:`counted`), a job
published, started or ended. Each keeps the record's node and edge fields in step and
observes the scheduler's metrics (queue wait, job duration, items per edge).
"""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.flow.plan import Plan
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.metrics import SchedulerMetrics


def add_edges(record: pb.FlowRecord, plan: Plan) -> None:
    """Give a new record one EdgeProgress per stream of its plan, in the flow's order."""
    for job in plan.jobs:
        descriptor = job.descriptor
        for port, spec in descriptor.inputs.items():
            if spec.WhichOneof("source") == "queue":
                record.edges.add(source=spec.edge, target=f"{descriptor.node}.{port}")


def cached(
    record: pb.FlowRecord, items: Mapping[str, Mapping[str, int]], errors: Mapping[str, str]
) -> None:
    """Count the items of each cached node's outputs (node -> port -> items) as sent, those
    of its error port (node -> port, for the nodes that have one) as errors sent too."""
    for node in record.nodes:
        if node.node in items:
            node.items_sent = sum(items[node.node].values())
            node.errors_sent = items[node.node].get(errors.get(node.node, ""), 0)
    for edge in record.edges:
        source, _, port = edge.source.partition(".")
        if source in items:
            edge.items_sent = items[source].get(port, 0)


def published(record: pb.FlowRecord, now: float) -> None:
    """Stamp the time its jobs were published on every node of a record (a cached node has
    none)."""
    for node in record.nodes:
        if node.state != pb.NODE_STATE_CACHED:
            node.published = now


def started(node: pb.NodeProgress, time: float, metrics: SchedulerMetrics) -> None:
    """A node's job started at ``time`` (the executor's clock): its queue wait is known."""
    node.started = time
    if node.published:
        metrics.queue_wait.labels(node.progdef).observe(max(0.0, time - node.published))


def ended(
    record: pb.FlowRecord,
    node: pb.NodeProgress,
    time: float,
    metrics: SchedulerMetrics,
    *,
    items_sent: Mapping[str, int],
    items_received: Mapping[str, int],
) -> None:
    """A node's job ended at ``time`` with these final counts."""
    counted(record, node, items_sent, items_received, metrics)
    node.ended = time
    if node.started:
        metrics.job_duration.labels(node.progdef, "ended").observe(max(0.0, time - node.started))


def counted(
    record: pb.FlowRecord,
    node: pb.NodeProgress,
    items_sent: Mapping[str, int],
    items_received: Mapping[str, int],
    metrics: SchedulerMetrics,
) -> bool:
    """Take a job's counts so far (per port) into its node's items received and its
    edges; return True when anything moved.

    The node's items sent are the lifecycle's to set (with those sent to its error port).
    A port a report leaves out keeps its count: an executor that does not count what it
    receives never sets those numbers back to 0.
    """
    moved = False
    if items_received and sum(items_received.values()) != node.items_received:
        node.items_received = sum(items_received.values())
        moved = True
    prefix = f"{node.node}."
    for edge in record.edges:
        if edge.source.startswith(prefix):
            sent = items_sent.get(edge.source[len(prefix) :])
            if sent is not None and sent != edge.items_sent:
                if sent > edge.items_sent:
                    edge_name = f"{edge.source} -> {edge.target}"
                    metrics.edge_items.labels(record.name, edge_name).inc(sent - edge.items_sent)
                edge.items_sent = sent
                moved = True
        if edge.target.startswith(prefix):
            received = items_received.get(edge.target[len(prefix) :])
            if received is not None and received != edge.items_received:
                edge.items_received = received
                moved = True
    return moved


def sampled(record: pb.FlowRecord, depths: Mapping[str, int], now: float) -> bool:
    """Take queue depths sampled at ``now`` (edge target -> frames waiting).

    Returns True when a depth changed (the record is worth saving and telling watchers);
    the sample time alone is not.
    """
    moved = False
    for edge in record.edges:
        depth = depths.get(edge.target)
        if depth is None:
            continue
        moved = moved or depth != edge.queue_depth or not edge.sampled
        edge.queue_depth = depth
        edge.sampled = now
    return moved
