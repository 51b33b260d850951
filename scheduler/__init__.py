"""The scheduler side of dagyo, three programs by audience.

* :mod:`scheduler.flow`: the flow model: parse, check, bind types, plan, render;
* :mod:`scheduler.service`: the long-running scheduler (gRPC API, lifecycle, state);
* :mod:`scheduler.cli`: the ``dagyo`` command, with :mod:`scheduler.client` (talking to a
  scheduler), :mod:`scheduler.embedded` (``dagyo run``), :mod:`scheduler.local_cluster`
  (``dagyo up``) and :mod:`scheduler.deploy` (images and Kubernetes objects).

The public names are re-exported here, imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler._lazy import lazy_exports

__all__ = [
    "EmbeddedRunner",
    "LocalCluster",
    "Scheduler",
    "SchedulerClient",
    "SchedulerSettings",
    "check_flow",
    "load_flow",
    "serve",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "EmbeddedRunner": "scheduler.embedded",
        "LocalCluster": "scheduler.local_cluster",
        "Scheduler": "scheduler.service.server",
        "SchedulerClient": "scheduler.client.api",
        "SchedulerSettings": "scheduler.service.config",
        "check_flow": "scheduler.flow.check",
        "load_flow": "scheduler.flow.model",
        "serve": "scheduler.service.server",
    },
)

if TYPE_CHECKING:
    from scheduler.client.api import SchedulerClient
    from scheduler.embedded import EmbeddedRunner
    from scheduler.flow.check import check_flow
    from scheduler.flow.parse import load_flow
    from scheduler.local_cluster import LocalCluster
    from scheduler.service.config import SchedulerSettings
    from scheduler.service.server import Scheduler, serve
