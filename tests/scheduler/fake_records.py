"""Flow records and runtimes held in memory, where a test needs what the store's reads give
(`get`, `runtime`) without a store; and the lifecycle parts that reach them."""

from __future__ import annotations

from dataclasses import dataclass, field

from executor.core.objects import ObjectStore
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime


@dataclass
class Records:
    records: dict[str, pb.FlowRecord] = field(default_factory=dict)
    runtimes: dict[str, FlowRuntime] = field(default_factory=dict)

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        return self.records.get(flow_id)

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        return self.runtimes.get(flow_id)


@dataclass
class Lifecycle:
    store: Records
    object_store: ObjectStore | None
