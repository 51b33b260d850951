"""Linking a checked flow into jobs: one job descriptor per node, one queue per stream."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from executor.core.constants import EVENTS_EXCHANGE, FAILURES_EXCHANGE, export_queue, stream_queue
from executor.core.progdef import Progdef
from executor.core.registry import descriptor_set
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.flow.model import CheckedFlow, Endpoint


@dataclass(frozen=True)
class PlannedJob:
    """One node's job and the progdef that runs it."""

    progdef: Progdef
    descriptor: Job


@dataclass(frozen=True)
class Plan:
    """Everything the scheduler or the embedded runner needs to start a flow.

    Attributes:
        jobs: one per node, in a topological order.
        stream_queues: every stream queue of the flow (inputs fed by edges).
        export_queues: export name -> the queue its items arrive on.
        export_types: export name -> typename.
        export_tokens: export name -> the producer token its frames carry.
    """

    flow_id: str
    jobs: tuple[PlannedJob, ...]
    stream_queues: tuple[str, ...]
    export_queues: Mapping[str, str]
    export_types: Mapping[str, str]
    export_tokens: Mapping[str, str]

    @property
    def queues(self) -> tuple[str, ...]:
        """Every stream and export queue of the flow."""
        return self.stream_queues + tuple(self.export_queues.values())


def plan_flow(checked: CheckedFlow, *, flow_id: str, deadline: float = 0.0) -> Plan:
    """Build the job descriptors of a checked flow.

    Args:
        flow_id: names the flow's queues; unique per submitted flow.
        deadline: Unix time after which jobs stop (0 for none).
    """
    flow = checked.flow
    export_queues = {name: export_queue(flow_id, name) for name in flow.exports}
    export_types = {
        name: checked.port_types[(source.node, "out", source.port)]
        for name, source in flow.exports.items()
    }
    # A producer token per output, the secret that lets its job, and no one else, write
    # its streams (docs/security.md): its readers are told it in their job descriptors.
    tokens: dict[Endpoint, str] = {}

    def token_of(output: Endpoint) -> str:
        return tokens.setdefault(output, secrets.token_hex(16))

    stream_queues: list[str] = []
    jobs = []
    for node_name in checked.order:
        progdef = checked.progdefs[node_name]
        job = Job(
            flow_id=flow_id,
            node=node_name,
            progdef=progdef.name,
            version=progdef.version,
            deadline=deadline,
            events_exchange=EVENTS_EXCHANGE,
            failures_exchange=FAILURES_EXCHANGE,
        )
        for port in progdef.inputs:
            target = Endpoint(node_name, port)
            spec = job.inputs[port]
            spec.typename = checked.port_types[(node_name, "in", port)]
            source = checked.source_of(target)
            if source is None:
                spec.consts.items.extend(checked.const_items[target])
            else:
                spec.queue = stream_queue(flow_id, node_name, port)
                spec.edge = str(source)
                spec.token = token_of(source)
                stream_queues.append(spec.queue)
        for port in progdef.outputs:
            source = Endpoint(node_name, port)
            spec_out = job.outputs[port]
            spec_out.typename = checked.port_types[(node_name, "out", port)]
            spec_out.token = token_of(source)
            spec_out.queues.extend(
                stream_queue(flow_id, t.node, t.port) for t in checked.consumers_of(source)
            )
            spec_out.queues.extend(export_queues[e] for e in checked.exports_of(source))
        typenames = {spec.typename for spec in job.inputs.values()}
        typenames |= {spec.typename for spec in job.outputs.values()}
        job.types.CopyFrom(descriptor_set(sorted(typenames), for_job=True))
        jobs.append(PlannedJob(progdef, job))
    return Plan(
        flow_id=flow_id,
        jobs=tuple(jobs),
        stream_queues=tuple(stream_queues),
        export_queues=export_queues,
        export_types=export_types,
        export_tokens={name: token_of(source) for name, source in flow.exports.items()},
    )
