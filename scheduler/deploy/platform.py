"""What the catalogue runs on, rendered by ``dagyo deploy`` before it: RabbitMQ
(:mod:`scheduler.deploy.broker`), the development profile's PostgreSQL
(:mod:`scheduler.deploy.database`), and the Service and PodDisruptionBudget of the
schedulers, whose Deployment comes with the catalogue (:mod:`scheduler.deploy.catalogue`).
"""

from __future__ import annotations

from typing import Any

from scheduler.deploy.broker import render_broker
from scheduler.deploy.catalogue import SCHEDULER_GRPC_PORT, SCHEDULER_METRICS_PORT, SCHEDULER_NAME
from scheduler.deploy.database import render_database
from scheduler.deploy.manifests import labels_for, metadata_for, selector_for
from scheduler.deploy.settings import PROFILE_DEVELOPMENT, DeploySettings
from scheduler.errors import ManifestError


def render_platform(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the broker, the development PostgreSQL (``--profile development``) and the
    schedulers' Service and budget, in apply order.

    Raises:
        ManifestError: the development profile without a state Secret to render.
    """
    objects = render_broker(settings)
    if settings.profile == PROFILE_DEVELOPMENT:
        if not settings.state_secret:
            raise ManifestError(
                "--profile development renders a PostgreSQL for the schedulers' state: "
                "drop --state-secret none"
            )
        objects += render_database(settings)
    return [*objects, scheduler_service(settings), scheduler_budget(settings)]


def scheduler_service(settings: DeploySettings) -> dict[str, Any]:
    """Return the Service in front of every scheduler replica: gRPC (any replica answers
    any call; DAGYO_SCHEDULER=dagyo-scheduler.<namespace>.svc:50051 in the cluster) and
    metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(SCHEDULER_NAME, settings, labels_for("scheduler")),
        "spec": {
            "selector": selector_for("scheduler"),
            "ports": [
                {"name": "grpc", "port": SCHEDULER_GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": SCHEDULER_METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def scheduler_budget(settings: DeploySettings) -> dict[str, Any]:
    """Return the PodDisruptionBudget that evicts one scheduler at a time: the others take
    its flows over within the lease."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata_for(SCHEDULER_NAME, settings, labels_for("scheduler")),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_for("scheduler")},
        },
    }
