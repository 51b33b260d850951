"""The scheduler's periodic check: which running flows must end, and why.

A flow ends here when it passed its deadline, when a started job's executor fell silent
(LOST), when a job still waits in a mailbox that no live executor pulls and no
autoscaler serves (LOST: nothing would ever take it), or when its started jobs wait on
full streams for a job that cannot start (DEADLOCK).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from executor.core.errors import BrokerError
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_DEADLINE,
    FAILURE_KIND_DEADLOCK,
    FAILURE_KIND_LOST,
    FAILURE_KIND_PANIC,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.admission import job_expiry_s
from scheduler.service.flows import FlowTable
from scheduler.service.flowstate import ActiveFlow
from scheduler.service.liveness import Liveness

if TYPE_CHECKING:
    from scheduler.service.broker import Broker

# Events waiting unread past which the scheduler does not judge executors silent.
EVENTS_BACKLOG_LIMIT = 100

NODE_PENDING = pb.NODE_STATE_PENDING
NODE_RUNNING = pb.NODE_STATE_RUNNING
NODE_ENDED = pb.NODE_STATE_ENDED
NODE_CACHED = pb.NODE_STATE_CACHED


@dataclass(frozen=True)
class End:
    """Why a flow must end: a failure kind, the error, and the node at fault if any."""

    flow_id: str
    kind: int
    error: str
    node: pb.NodeProgress | None = None


@dataclass(frozen=True)
class Waiting:
    """A job that has waited in its mailbox past the timeout, with no executor heard."""

    flow_id: str
    node: pb.NodeProgress
    mailbox: str


def overdue(
    flows: Iterable[ActiveFlow], liveness: Liveness, *, wall: float, now: float
) -> tuple[list[End], list[Waiting]]:
    """The flows to end now (deadline, lost job, deadlock), and the jobs that may never be taken.

    Args:
        flows: the running and the waiting flows (not starting, not finishing).
        wall: Unix time now.
        now: monotonic time now.
    """
    ends: list[End] = []
    waiting: list[Waiting] = []
    for flow in flows:
        deadline = flow.runtime.deadline
        if deadline and wall >= deadline:
            allowed = round(deadline - flow.record.created, 3)
            ends.append(
                End(
                    flow.id, FAILURE_KIND_DEADLINE, f"the flow passed its deadline of {allowed:g} s"
                )
            )
            continue
        old = wall - flow.record.created > liveness.timeout_s
        if flow.runtime.waiting:
            unserved = _never_served(flow, liveness) if old else None
            if unserved is not None:
                ends.append(unserved)
            continue
        stuck = deadlocked(flow, liveness.timeout_s, now=now)
        if stuck is not None:
            ends.append(stuck)
            continue
        expired = _expired(flow, job_expiry_s(liveness.timeout_s), now=now)
        if expired is not None:
            ends.append(expired)
            continue
        unfinished = _exports_unfinished(flow, liveness)
        if unfinished is not None:
            ends.append(unfinished)
            continue
        for node in flow.record.nodes:
            lost = _lost(flow, node, liveness) if node.state == NODE_RUNNING else None
            if lost is not None:
                ends.append(End(flow.id, FAILURE_KIND_LOST, lost, node))
                break
            mailbox = flow.runtime.mailboxes.get(node.node)
            if (
                old
                and node.state == NODE_PENDING
                and mailbox is not None
                and not liveness.serves(mailbox, since_resume=True)
            ):
                waiting.append(Waiting(flow.id, node, mailbox))
    return ends, waiting


def _lost(flow: ActiveFlow, node: pb.NodeProgress, liveness: Liveness) -> str | None:
    """Why a running job is lost: its executor fell silent, or, alive, no longer names it
    in its heartbeats and reported no end of it (whatever was lost on the way)."""
    silent = liveness.lost(node.executor)
    if silent is not None:
        return silent
    unnamed = liveness.since(flow.named.get(node.node, 0.0))
    if unnamed is None or unnamed <= liveness.timeout_s:
        return None
    return (
        f"job lost: executor {node.executor} is alive but has not named job {node.node} "
        f"(progdef {node.progdef}) in its heartbeats for {unnamed:.1f} s (timeout "
        f"{liveness.timeout_s:g} s), and no report of the job's end came: it ended unheard"
    )


def _exports_unfinished(flow: ActiveFlow, liveness: Liveness) -> End | None:
    """A flow whose jobs have all ended and whose exports did not all reach end-of-stream
    within a timeout of the last of them (or of the last export frame read): fails."""
    if not flow.record.nodes or flow.runtime.replaying:
        return None
    if any(n.state not in (NODE_ENDED, NODE_CACHED) for n in flow.record.nodes):
        return None
    waited = liveness.since(flow.exported_at)
    if waited is None or waited <= liveness.timeout_s:
        return None
    streams = [*sorted(flow.runtime.exports.items()), *sorted(flow.runtime.recordings.items())]
    for name, stream in streams:
        if not stream.ended:
            what = f"export {name}" if name in flow.runtime.exports else f"recording of {name}"
            error = (
                f"{what} (from {stream.source}): every job of the flow ended, but the "
                f"export stream did not reach end-of-stream within {liveness.timeout_s:g} s "
                f"({stream.next_seq} frames read, none of them the end): its producer "
                "ended without one"
            )
            return End(flow.id, FAILURE_KIND_PANIC, error, flow.node(stream.source.split(".")[0]))
    return None


def _never_served(flow: ActiveFlow, liveness: Liveness) -> End | None:
    """A waiting flow with a job no executor will ever take: none pulls its mailbox."""
    for node in flow.record.nodes:
        mailbox = flow.runtime.mailboxes.get(node.node)
        if mailbox is not None and not liveness.serves(mailbox, since_resume=True):
            error = _never_taken_error(node, mailbox, liveness.timeout_s)
            return End(flow.id, FAILURE_KIND_LOST, error, node)
    return None


def _expired(flow: ActiveFlow, expiry_s: float, *, now: float) -> End | None:
    """An admitted flow with a job of a progdef without autoscaler its broker dropped unrun."""
    if not flow.admitted_at or now - flow.admitted_at <= expiry_s:
        return None
    for node in flow.record.nodes:
        mailbox = flow.runtime.mailboxes.get(node.node)
        if node.state == NODE_PENDING and mailbox is not None:
            error = (
                f"job {node.node} (progdef {node.progdef}) was not taken within {expiry_s:g} s "
                f"of the flow's admission, though its executors had a free slot, and expired "
                f"from {mailbox}: its executors are stuck stopping old jobs, or hung; "
                "restart them and resubmit the flow"
            )
            return End(flow.id, FAILURE_KIND_LOST, error, node)
    return None


def deadlocked(flow: ActiveFlow, timeout_s: float, *, now: float) -> End | None:
    """The last line of defence against a flow that cannot go on, or None.

    A flow is deadlocked when a job of it has not started a timeout after the flow was
    admitted, nothing of it moved (no job started, ended or sent an item) for a timeout,
    and at least one started job has waited on a full stream for a timeout: the streams
    it fills are read by the job that cannot start. Admission makes it rare (executors
    that announce no slots, or slots taken by another scheduler's jobs).
    """
    if not flow.admitted_at:
        return None  # loaded after a restart: its admission time is not known
    if now - flow.admitted_at <= timeout_s or now - flow.moved_at <= timeout_s:
        return None
    unstarted = [n for n in flow.record.nodes if n.state == NODE_PENDING]
    started = [n.node for n in flow.record.nodes if n.state == NODE_RUNNING]
    blocked = [name for name in started if flow.blocked.get(name, 0.0) > timeout_s]
    if not unstarted or not blocked:
        return None
    node = unstarted[0]
    error = (
        f"deadlock: job {node.node} (progdef {node.progdef}) never started while every "
        f"started job ({', '.join(started)}) waits on a full stream or on it, and nothing "
        f"moved for {now - flow.moved_at:.1f} s ({', '.join(blocked)} blocked on output): "
        f"the executors of {node.progdef} had no free slot for it; start more of them or "
        "raise DAGYO_MAX_JOBS"
    )
    return End(flow.id, FAILURE_KIND_DEADLOCK, error, node)


def _never_taken_error(node: pb.NodeProgress, mailbox: str, timeout_s: float) -> str:
    return (
        f"job {node.node} (progdef {node.progdef}) was never taken: no executor "
        f"pulls {mailbox} (none heard for {timeout_s:g} s) and it has no autoscaler: "
        "start one (`dagyo up`, or the progdef's executor on its folder: `python -m executor "
        "DIR`, or `dagyo-executor DIR` from sdks/js for a progdef of runtime node)"
    )


def never_taken(
    waiting: Iterable[Waiting],
    depth: Callable[[str], int | None],
    timeout_s: float,
    consumers: Callable[[str], int | None] = lambda _: 0,
) -> list[End]:
    """The waiting jobs that no executor will ever take, on evidence, not one late heartbeat.

    A job counts only while its mailbox still holds jobs (one an executor took but has not
    reported started yet is not waiting) and has no consumer: a busy executor's heartbeat
    may come late under load, but while anything consumes the mailbox it is pulled.

    Args:
        depth: how many messages a queue holds (None when it does not exist).
        consumers: how many consumers a queue has (None when it does not exist).
    """
    depths: dict[str, int | None] = {}
    ends: list[End] = []
    for job in waiting:
        if job.mailbox not in depths:
            try:
                depths[job.mailbox] = depth(job.mailbox) and not consumers(job.mailbox)
            except BrokerError:
                depths[job.mailbox] = None
        if not depths[job.mailbox]:
            continue
        error = _never_taken_error(job.node, job.mailbox, timeout_s)
        ends.append(End(job.flow_id, FAILURE_KIND_LOST, error, job.node))
    return ends


def due(table: FlowTable, liveness: Liveness, broker: Broker, timeout_s: float) -> list[End]:
    """The flows to end now, each with the first reason found (the lifecycle's tick).

    Raises nothing: a broker that cannot be asked makes the check judge nobody silent.
    """
    try:
        backlog = broker.liveness_backlog()
    except BrokerError:
        backlog = None
    # Judge liveness only on fresh news: a backlog of events may hold signs of life.
    liveness.behind(backlog is None or backlog > EVENTS_BACKLOG_LIMIT)
    with table.lock:
        running = [f for f in table.flows.values() if not (f.runtime.finishing or f.starting)]
        ends, waiting = overdue(running, liveness, wall=time.time(), now=time.monotonic())
    # Outside the lock, which the I/O thread (answering these) needs.
    ends += never_taken(waiting, broker.queue_depth, timeout_s, broker.consumer_count)
    first: dict[str, End] = {}
    for end in ends:
        first.setdefault(end.flow_id, end)  # one end per flow: the first reason found
    return list(first.values())
