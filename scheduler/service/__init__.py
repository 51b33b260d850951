"""The scheduler service: gRPC API, flow lifecycle, watchdog, broker side, state, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler._lazy import lazy_exports

__all__ = ["Scheduler", "SchedulerSettings", "serve"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Scheduler": "scheduler.service.server",
        "SchedulerSettings": "scheduler.service.config",
        "serve": "scheduler.service.server",
    },
)

if TYPE_CHECKING:
    from scheduler.service.config import SchedulerSettings
    from scheduler.service.server import Scheduler, serve
