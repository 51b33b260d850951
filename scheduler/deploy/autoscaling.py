"""What KEDA is told of a progdef version: its ScaledObject, and the trigger measuring its
demand that a ScaledObject and a ScaledJob (:mod:`scheduler.deploy.scaled_job`) share.

The trigger asks the scheduler's external scaler (jobs waiting plus running, from the
scheduler's own records) or, with ``--scaler rabbitmq``, KEDA's RabbitMQ scaler (jobs
waiting in the mailbox only); docs/deploy.md "Autoscaling" says what each counts.
"""

from __future__ import annotations

from typing import Any

from executor.core.constants import ENV_QUEUE
from executor.core.progdef import Progdef
from scheduler.deploy.credentials import SCALER_AUTHENTICATION
from scheduler.deploy.manifests import (
    labels_for,
    metadata_for,
    version_name,
)
from scheduler.deploy.settings import (
    SCALER_EXTERNAL,
    DeploySettings,
)

# The scheduler's Service and gRPC port (scheduler.deploy.platform renders the Service).
SCHEDULER_SERVICE = "dagyo-scheduler"
SCHEDULER_GRPC_PORT = 50051
# KEDA polls the mailbox depth this often; a new job waits at most this long for scale-up.
KEDA_POLLING_INTERVAL_S = 10
KEDA_COOLDOWN_S = 300
# The AMQP protocol reports only jobs no executor has taken yet, not the running ones,
# so an idle-looking mailbox does not mean idle executors: scale down slowly, since every
# executor that goes drains its running jobs for up to its grace period.
SCALE_DOWN_STABILIZATION_S = 600


def scaled_object(progdef: Progdef, version: str, settings: DeploySettings) -> dict[str, Any]:
    """Return the KEDA ScaledObject that scales the version's executors on their demand."""
    name = version_name(progdef.name, version)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata_for(name, settings, labels_for("executor", progdef, version)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
                "envSourceContainerName": "executor",
            },
            "minReplicaCount": progdef.scaling.min_executors,
            "maxReplicaCount": progdef.scaling.max_executors,
            "pollingInterval": KEDA_POLLING_INTERVAL_S,
            "cooldownPeriod": KEDA_COOLDOWN_S,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION_S}
                    }
                }
            },
            "triggers": [scaler_trigger(progdef, version, settings)],
        },
    }


def scaler_trigger(progdef: Progdef, version: str, settings: DeploySettings) -> dict[str, Any]:
    """Return the ScaledObject trigger that measures the progdef version's demand."""
    if settings.scaler == SCALER_EXTERNAL:
        address = (
            settings.scaler_address
            or f"{SCHEDULER_SERVICE}.{settings.namespace}.svc:{SCHEDULER_GRPC_PORT}"
        )
        # external-push: KEDA also holds a StreamIsActive call open, so the first job of a
        # progdef scaled to zero wakes it at once, not at the next polling interval.
        trigger: dict[str, Any] = {
            "type": "external-push",
            "name": "demand",
            "metadata": {
                "scalerAddress": address,
                "progdef": progdef.name,
                # The mailbox's version: an old version keeps its own ScaledObject.
                "version": version,
            },
        }
        if settings.tls_secret:
            # The scheduler serves TLS only: KEDA verifies it with the CA of its Secret.
            trigger["authenticationRef"] = {"name": SCALER_AUTHENTICATION}
        return trigger
    return {
        "type": "rabbitmq",
        "name": "mailbox",
        "metadata": {
            "protocol": "amqp",
            "mode": "QueueLength",
            "queueName": progdef.mailbox,
            # One more executor per max_jobs jobs waiting for a free slot; any waiting job
            # wakes a progdef scaled to zero. Running jobs are acked, so they count as 0.
            "value": str(progdef.scaling.max_jobs),
            "activationValue": "0",
            # KEDA reads the broker URL from the executor's own environment.
            "hostFromEnv": ENV_QUEUE,
        },
    }
