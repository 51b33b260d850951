"""What the flow service's listing use cases answer: pages of records and reports, and an
invocation's events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb


@dataclass(frozen=True)
class FlowPage:
    """A page of flow records, newest first.

    Attributes:
        records: the records, without their exports.
        next_token: gives the next page; empty after the last.
        every_tenant: the caller sees every tenant's flows (an admin, or the scheduler
            runs open); a user sees its own tenant's only.
    """

    records: list[pb.FlowRecord]
    next_token: str
    every_tenant: bool


@dataclass(frozen=True)
class FailurePage:
    """A page of failure reports, oldest first; ``next_token`` is empty after the last."""

    reports: list[FailureReport]
    next_token: str


@dataclass(frozen=True)
class Invocation:
    """A progdef invoked as a one-node flow: its flow id, then (``events``) each output
    item and, last, the end record."""

    flow_id: str
    events: Iterator[pb.InvokeEvent]
