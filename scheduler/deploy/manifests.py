"""The Kubernetes objects of one progdef, rendered as plain dicts, and the shared pieces.

Per progdef version: a Deployment of executors and a PodDisruptionBudget, each named for
the version (and, with KEDA, a ScaledObject: :mod:`scheduler.deploy.autoscaling`), so an
upgrade starts the new version beside the old one, whose executors drain its mailbox
until the scheduler retires it (:mod:`scheduler.deploy.prune` then deletes them).
:mod:`scheduler.deploy.catalogue` adds the catalogue ConfigMap and the scheduler's
Deployment, :mod:`scheduler.deploy.platform` RabbitMQ, the development PostgreSQL and the
scheduler's Service and budget; the static parts (namespace, the scheduler's
ServiceAccount, RBAC and SQLite volume) live in deploy/k8s/.
"""

from __future__ import annotations

import math
import re
from typing import Any

from executor.core.constants import ENV_JOBS, ENV_PROGDEF_VERSION, ENV_QUEUE, ENV_QUEUE_TYPE, PREFIX
from executor.core.progdef import Progdef
from scheduler.deploy.images import (
    image_reference,
    pinned_reference,
    progdef_image,
)
from scheduler.deploy.settings import AUTOSCALER_KEDA, DeploySettings
from scheduler.errors import ManifestError

ENV_METRICS_PORT = "DAGYO_METRICS_PORT"
EXECUTOR_METRICS_PORT = 9100
# The numeric user of every dagyo image, so `runAsNonRoot` can be checked by the kubelet.
RUN_AS_USER = 10001
# The kubelet sends SIGTERM, waits this long, then SIGKILL: the drain grace plus a margin
# for the executor to close its broker connection and exit.
MIN_GRACE_S = 60
GRACE_MARGIN_S = 10
QUEUE_SECRET_KEY = "url"
# The object store's settings (DAGYO_OBJECTS, DAGYO_OFFLOAD_BYTES, AWS_*), each key one
# variable of the scheduler and of every executor; optional: without it nothing offloads.
OBJECTS_SECRET = "dagyo-objects"
PROGDEF_SECRET_PREFIX = "dagyo-progdef-"
GPU_RESOURCE = "nvidia.com/gpu"
# Set by NVIDIA's GPU feature discovery (part of the GPU operator) on nodes with a GPU.
GPU_NODE_LABEL = "nvidia.com/gpu.present"
LABEL_PROGDEF = "dagyo.io/progdef"
LABEL_VERSION = "dagyo.io/version"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def object_name(progdef: Progdef) -> str:
    """Return the Kubernetes name of a progdef: ``dagyo-<name>``, ``_`` as ``-``."""
    return base_name(progdef.name)


def base_name(progdef: str) -> str:
    """Return the Kubernetes name of the progdef named ``progdef``: ``dagyo-<name>``."""
    return f"{PREFIX}-" + progdef.replace("_", "-").rstrip("-")


def version_name(progdef: str, version: str) -> str:
    """Return the name of one progdef version's executor objects: ``dagyo-<name>-<version>``.

    Example:
        ``version_name("parse_int", "3f2a9c0d1e4b5a6f")`` is
        ``dagyo-parse-int-3f2a9c0d1e4b5a6f``.
    """
    return f"{base_name(progdef)}-{version}"


def progdef_secret(progdef: Progdef) -> str:
    """Return the name of the Secret holding a progdef's declared secrets."""
    return PROGDEF_SECRET_PREFIX + object_name(progdef).removeprefix(f"{PREFIX}-")


def grace_period_s(progdef: Progdef) -> int:
    """Return terminationGracePeriodSeconds: the drain grace (at least 60 s) plus a margin."""
    return math.ceil(max(MIN_GRACE_S, progdef.drain_grace_s)) + GRACE_MARGIN_S


def labels_for(component: str, progdef: Progdef | None = None, version: str = "") -> dict[str, str]:
    """Return the labels of a dagyo object: component, and progdef and version when given.

    Raises:
        ManifestError: when the version cannot be a label value.
    """
    labels = {
        "app.kubernetes.io/name": f"{PREFIX}-{component}",
        "app.kubernetes.io/part-of": PREFIX,
        "app.kubernetes.io/managed-by": PREFIX,
    }
    if progdef is not None:
        labels[LABEL_PROGDEF] = progdef.name
    if version:
        if len(version) > 63 or not _LABEL_VALUE.match(version):
            name = progdef.name if progdef else component
            raise ManifestError(f"progdef {name}: version {version!r} is not a label value")
        labels[LABEL_VERSION] = version
    return labels


def selector_for(
    component: str, progdef: Progdef | None = None, version: str = ""
) -> dict[str, str]:
    """Return the pod selector of a component (and progdef, and version)."""
    # Each version has its own Deployment and budget, so each selects its own pods only:
    # the old version's draining executors are never counted against the new one's.
    selector = {"app.kubernetes.io/name": f"{PREFIX}-{component}"}
    if progdef is not None:
        selector[LABEL_PROGDEF] = progdef.name
    if version:
        selector[LABEL_VERSION] = version
    return selector


def metadata_for(name: str, settings: DeploySettings, labels: dict[str, str]) -> dict[str, Any]:
    """Return an object's metadata in the deploy namespace."""
    return {"name": name, "namespace": settings.namespace, "labels": labels}


def scheduler_config_map(
    name: str, settings: DeploySettings, data: dict[str, str], binary: dict[str, str] | None = None
) -> dict[str, Any]:
    """Return a ConfigMap the scheduler reads (``binary``: its binaryData, if any)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata_for(name, settings, labels_for("scheduler")),
        "data": data,
        **({"binaryData": binary} if binary else {}),
    }


def queue_env(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the ``DAGYO_QUEUE`` variable, read from the broker URL Secret, and
    ``DAGYO_QUEUE_TYPE``: every dagyo process declares its durable queues of one type."""
    return [
        {
            "name": ENV_QUEUE,
            "valueFrom": {"secretKeyRef": {"name": settings.queue_secret, "key": QUEUE_SECRET_KEY}},
        },
        {"name": ENV_QUEUE_TYPE, "value": settings.queue_type},
    ]


def objects_env_from() -> list[dict[str, Any]]:
    """Return the ``envFrom`` that gives a container the object store's settings."""
    return [{"secretRef": {"name": OBJECTS_SECRET, "optional": True}}]


def container_security() -> dict[str, Any]:
    """Return the container securityContext of the restricted Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security() -> dict[str, Any]:
    """Return the pod securityContext: dagyo's numeric non-root user, default seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def spread_over_machines(selector: dict[str, str]) -> dict[str, Any]:
    """Return the affinity that puts the selected pods on different machines where it can."""
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }


def http_probe(path: str, port: str, *, period_s: int, failures: int) -> dict[str, Any]:
    """Return an HTTP GET probe of path on the named container port."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def executor_deployment(progdef: Progdef, version: str, settings: DeploySettings) -> dict[str, Any]:
    """Return the Deployment of one progdef's executors."""
    tag = image_reference(settings.registry, progdef_image(progdef), version)
    env: list[dict[str, Any]] = [
        *queue_env(settings),
        {"name": ENV_JOBS, "value": progdef.mailbox},
        {"name": ENV_PROGDEF_VERSION, "value": version},
        {"name": ENV_METRICS_PORT, "value": str(EXECUTOR_METRICS_PORT)},
    ]
    env.extend({"name": key, "value": value} for key, value in sorted(progdef.env.items()))
    env.extend(
        {
            "name": secret,
            "valueFrom": {"secretKeyRef": {"name": progdef_secret(progdef), "key": secret}},
        }
        for secret in progdef.secrets
    )
    resources: dict[str, Any] = {
        "requests": {"cpu": progdef.resources.cpu, "memory": progdef.resources.memory},
        # No CPU limit: throttling stalls streams; memory is capped at what was asked for
        # so the node is never overcommitted on memory.
        "limits": {"memory": progdef.resources.memory},
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace_period_s(progdef),
        "securityContext": pod_security(),
        "containers": [
            {
                "name": "executor",
                "image": pinned_reference(tag, settings.images),
                "imagePullPolicy": "IfNotPresent",
                "env": env,
                "envFrom": objects_env_from(),
                "ports": [
                    {"name": "metrics", "containerPort": EXECUTOR_METRICS_PORT, "protocol": "TCP"}
                ],
                "resources": resources,
                # Startup allows a minute of imports and broker connection before liveness.
                "startupProbe": http_probe("/healthz", "metrics", period_s=2, failures=30),
                "livenessProbe": http_probe("/healthz", "metrics", period_s=10, failures=3),
                "readinessProbe": http_probe("/readyz", "metrics", period_s=5, failures=2),
                "securityContext": container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if progdef.resources.gpu > 0:
        gpus = str(progdef.resources.gpu)
        resources["limits"][GPU_RESOURCE] = gpus
        pod["nodeSelector"] = {GPU_NODE_LABEL: "true"}
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    labels = labels_for("executor", progdef, version)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_for("executor", progdef, version)},
        # A new version is a new Deployment; this rolls only what keeps the version (an
        # image rebuilt to a new digest): new executors are up before old ones drain.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
        },
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(EXECUTOR_METRICS_PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": pod,
        },
    }
    if settings.autoscaler != AUTOSCALER_KEDA:
        # With KEDA the replica count is the autoscaler's; leaving it out of what dagyo
        # applies keeps a re-deploy from resetting it.
        spec["replicas"] = max(1, progdef.scaling.min_executors)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata_for(version_name(progdef.name, version), settings, labels),
        "spec": spec,
    }


def disruption_budget(progdef: Progdef, version: str, settings: DeploySettings) -> dict[str, Any]:
    """Return the PodDisruptionBudget that evicts one executor of the version at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata_for(
            version_name(progdef.name, version),
            settings,
            labels_for("executor", progdef, version),
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_for("executor", progdef, version)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
