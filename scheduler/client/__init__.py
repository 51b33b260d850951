"""Talking to a running scheduler: the gRPC client and the live failure follower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler._lazy import lazy_exports

__all__ = ["FailureFollower", "SchedulerClient"]

__getattr__ = lazy_exports(
    __name__,
    {"FailureFollower": "scheduler.client.failures", "SchedulerClient": "scheduler.client.api"},
)

if TYPE_CHECKING:
    from scheduler.client.api import SchedulerClient
    from scheduler.client.failures import FailureFollower
