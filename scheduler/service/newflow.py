"""A planned flow turned into what the scheduler follows: its record and its runtime.

The record is what users see (nodes pending, edges, the Flow JSON as submitted); the
runtime is what the scheduler resumes it from (its queues, exports, mailboxes, the jobs
it holds until admission, its autoscalers' ceilings, its nodes' error ports).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING

import scheduler.service.progress as progress
from executor.core.constants import MAILBOX_PREFIX
from scheduler.flow.plan import Plan
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.admission import autoscaled, ceiling
from scheduler.service.flowstate import (
    NODE_CACHED,
    NODE_PENDING,
    ActiveFlow,
    ExportStream,
    FlowRuntime,
    FlowState,
)

if TYPE_CHECKING:
    from scheduler.service.cached import Prepared


def new_flow(
    plan: Plan,
    *,
    name: str,
    created: float,
    deadline: float,
    sources: Mapping[str, str],
    tenant: str = "",
    flow_json: str = "",
    max_export_items: int = 0,
    max_export_bytes: int = 0,
    prepared: Prepared | None = None,
) -> ActiveFlow:
    """The flow of a plan as submitted, pending, every job held (see Lifecycle.submit).

    Args:
        prepared: what the cache decided: its cached nodes have no job, and the scheduler
            reads its recording streams.
    """
    flow_id = plan.flow_id
    cached = prepared.cached if prepared is not None else frozenset()
    nodes = [
        (
            job.descriptor.node,
            job.progdef.name,
            job.progdef.mailbox.removeprefix(f"{MAILBOX_PREFIX}.{job.progdef.name}."),
        )
        for job in plan.jobs
    ]
    record = pb.FlowRecord(
        id=flow_id,
        name=name,
        state=FlowState.PENDING.proto,
        created=created,
        tenant=tenant,
        flow_json=flow_json,
    )
    for node, progdef, version in nodes:
        state = NODE_CACHED if node in cached else NODE_PENDING
        record.nodes.add(node=node, progdef=progdef, version=version, state=state)
    progress.add_edges(record, plan)
    if prepared is not None:  # a cached node's items are counted as its job's would be
        errors = {job.descriptor.node: job.progdef.errors for job in plan.jobs}
        progress.cached(record, prepared.items, errors)
    runtime = FlowRuntime(
        deadline=deadline,
        max_export_items=max_export_items,
        max_export_bytes=max_export_bytes,
        queues=list(plan.queues),
        exports={
            export: ExportStream(
                queue,
                plan.export_types[export],
                sources[export],
                token=plan.export_tokens[export],
            )
            for export, queue in plan.export_queues.items()
        },
        mailboxes={
            job.descriptor.node: job.progdef.mailbox
            for job in plan.jobs
            if not autoscaled(job.progdef) and job.descriptor.node not in cached
        },
        recordings=dict(prepared.recordings) if prepared is not None else {},
        replaying=sorted(prepared.replays) if prepared is not None else [],
    )
    jobs = [job for job in plan.jobs if job.descriptor.node not in cached]
    runtime.held_jobs = [
        [job.progdef.mailbox, base64.b64encode(job.descriptor.SerializeToString()).decode()]
        for job in jobs
    ]
    runtime.error_ports = {
        job.descriptor.node: job.progdef.errors for job in jobs if job.progdef.errors
    }
    runtime.ceilings = {
        job.progdef.mailbox: ceiling(job.progdef) for job in jobs if autoscaled(job.progdef)
    }
    return ActiveFlow(record, runtime, starting=True)
