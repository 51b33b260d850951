"""The objects of a progdef of ``scaling.mode: job``: one KEDA ScaledJob, one job per pod.

A heavy progdef (a GPU model, a large memory footprint) is better served by a pod per job
than by long-lived executors: KEDA's ScaledJob starts a Kubernetes Job per job waiting in
the mailbox, whose one pod runs ``python -m executor /progdef --one-job`` (the node
executor, for a node progdef): it takes exactly one job, runs it, and exits 0. The trigger
is the one a Deployment's ScaledObject has (the scheduler's external scaler, or KEDA's
RabbitMQ scaler), and the pod is the Deployment's pod (image, environment, resources,
GPUs, secrets, security), run to completion.
"""

from __future__ import annotations

from typing import Any

from executor.core.progdef import Progdef
from scheduler.deploy.autoscaling import KEDA_POLLING_INTERVAL_S, scaler_trigger
from scheduler.deploy.images import IMAGE_COMMANDS
from scheduler.deploy.manifests import (
    executor_deployment,
    labels_for,
    metadata_for,
    version_name,
)
from scheduler.deploy.settings import (
    AUTOSCALER_KEDA,
    SCALER_EXTERNAL,
    DeploySettings,
)
from scheduler.errors import ManifestError

MODE_JOB = "job"
ONE_JOB_FLAG = "--one-job"
# Finished Jobs KEDA keeps for `kubectl describe` and logs; older ones are deleted.
JOBS_HISTORY = 5


def render_scaled_job(progdef: Progdef, version: str, settings: DeploySettings) -> list[Any]:
    """Return the ScaledJob of a progdef of ``scaling.mode: job``.

    Raises:
        ManifestError: without KEDA (``--autoscaler none``): only a ScaledJob starts its pods.
    """
    if settings.autoscaler != AUTOSCALER_KEDA:
        raise ManifestError(
            f"progdef {progdef.name}: scaling.mode job needs KEDA (a ScaledJob starts a pod "
            "per job): deploy with --autoscaler keda, or set its scaling.mode to deployment"
        )
    return [scaled_job(progdef, version, settings)]


def scaled_job(progdef: Progdef, version: str, settings: DeploySettings) -> dict[str, Any]:
    """Return the KEDA ScaledJob that runs one pod per job of the progdef version."""
    template = executor_deployment(progdef, version, settings)["spec"]["template"]
    pod = template["spec"]
    # A pod runs to completion: never restarted in place (its one job is over, or failed
    # and already failed its flow: a job is never run twice).
    pod["restartPolicy"] = "Never"
    (container,) = pod["containers"]
    # command, not args: it replaces an ENTRYPOINT a progdef's Dockerfile may have set.
    container["command"] = [*IMAGE_COMMANDS[progdef.runtime], ONE_JOB_FLAG]
    # Readiness only routes Service traffic, and nothing reaches a Job's pod by a Service.
    del container["readinessProbe"]
    strategy = (
        # The demand counts running jobs too, and KEDA subtracts the Jobs running.
        "default"
        if settings.scaler == SCALER_EXTERNAL
        # Ready messages only: KEDA subtracts only the Jobs whose pods have not started.
        else "accurate"
    )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": metadata_for(
            version_name(progdef.name, version), settings, labels_for("executor", progdef, version)
        ),
        "spec": {
            "jobTargetRef": {
                "parallelism": 1,
                "completions": 1,
                # A pod that failed is not started again: its job already failed its flow.
                "backoffLimit": 0,
                "template": template,
            },
            "envSourceContainerName": "executor",
            "pollingInterval": KEDA_POLLING_INTERVAL_S,
            "minReplicaCount": progdef.scaling.min_executors,
            "maxReplicaCount": progdef.scaling.max_executors,
            "successfulJobsHistoryLimit": JOBS_HISTORY,
            "failedJobsHistoryLimit": JOBS_HISTORY,
            # A new version is a new ScaledJob; gradual: a change that keeps the version
            # (an image rebuilt to a new digest) never deletes a running Job (KEDA's
            # default would, and with it a job in the middle of its flow).
            "rollout": {"strategy": "gradual"},
            "scalingStrategy": {"strategy": strategy},
            "triggers": [scaler_trigger(progdef, version, settings)],
        },
    }
