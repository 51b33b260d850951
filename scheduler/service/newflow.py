"""A planned flow turned into what the scheduler follows: its record and its runtime.

The record is what users see (nodes pending, edges, the Flow JSON as submitted); the
runtime is what the scheduler resumes it from (its queues, exports, mailboxes, the jobs
it holds until admission, its autoscalers' ceilings, its nodes' error ports).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import scheduler.service.progress as progress
from executor.core.constants import MAILBOX_PREFIX
from scheduler.flow.plan import Plan
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.admission import autoscaled, ceiling
from scheduler.service.flowstate import (
    NODE_PENDING,
    ActiveFlow,
    ExportStream,
    FlowRuntime,
    FlowState,
)


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
) -> ActiveFlow:
    """The flow of a plan as submitted, pending, every job held (see Lifecycle.submit)."""
    flow_id = plan.flow_id
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
        record.nodes.add(node=node, progdef=progdef, version=version, state=NODE_PENDING)
    progress.add_edges(record, plan)
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
            if not autoscaled(job.progdef)
        },
    )
    runtime.held_jobs = [
        [job.progdef.mailbox, base64.b64encode(job.descriptor.SerializeToString()).decode()]
        for job in plan.jobs
    ]
    runtime.error_ports = {
        job.descriptor.node: job.progdef.errors for job in plan.jobs if job.progdef.errors
    }
    runtime.ceilings = {
        job.progdef.mailbox: ceiling(job.progdef) for job in plan.jobs if autoscaled(job.progdef)
    }
    return ActiveFlow(record, runtime, starting=True)
