"""The whole catalogue as Kubernetes objects: the executors, the catalogue, the scheduler.

The scheduler loads the catalogue from a ConfigMap mounted as one folder per progdef
(``<name>/progdef.json``, ``<name>/VERSION`` and, when an autoscaler serves the mailbox,
``<name>/AUTOSCALER``). Only ConfigMap volume ``items`` can lay keys out as folders, and
the items name every progdef, so the scheduler's Deployment is rendered here with the
catalogue: adding, removing or upgrading a progdef restarts the scheduler on the new one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from executor.core.constants import PREFIX
from executor.core.progdef import Progdef
from executor.core.registry import COMPILED_FILE, compiled_types
from scheduler.constants import ENV_PROGDEFS, ENV_SCHEDULER
from scheduler.deploy.autoscaling import scaled_object
from scheduler.deploy.credentials import (
    SCALER_AUTHENTICATION,
    scaler_authentication_spec,
    scheduler_credentials,
)
from scheduler.deploy.images import is_pinned
from scheduler.deploy.manifests import (
    LABEL_PROGDEF,
    container_security,
    disruption_budget,
    executor_deployment,
    http_probe,
    labels_for,
    metadata_for,
    object_name,
    objects_env_from,
    pod_security,
    queue_env,
    scheduler_config_map,
    selector_for,
    spread_over_machines,
)
from scheduler.deploy.scaled_job import MODE_JOB, render_scaled_job
from scheduler.deploy.settings import (
    AUTOSCALER_KEDA,
    SCALER_EXTERNAL,
    DeploySettings,
)
from scheduler.deploy.triggers import scheduler_triggers, triggers_config_map, triggers_service
from scheduler.errors import ImagesNotPinned, ManifestError

ENV_STATE = "DAGYO_STATE"
ENV_LEASE_S = "DAGYO_LEASE_S"
STATE_SECRET_KEY = "url"
SCHEDULER_NAME = "dagyo-scheduler"
SCHEDULER_GRPC_PORT = 50051
SCHEDULER_METRICS_PORT = 9101
SCHEDULER_GRACE_S = 30
CATALOGUE_CONFIG_MAP = "dagyo-catalogue"
CATALOGUE_MOUNT = "/etc/dagyo/progdefs"
STATE_CLAIM = "dagyo-scheduler-state"
STATE_DIR = "/var/lib/dagyo"
ANNOTATION_CATALOGUE = "dagyo.io/catalogue"


def render_catalogue(catalogue: Mapping[str, Progdef], settings: DeploySettings) -> list[Any]:
    """Return every object ``dagyo deploy`` applies, in apply order.

    The catalogue ConfigMap and the executors come first, the scheduler last, so a new
    mailbox has its executors or autoscaler before the scheduler sends it jobs.

    Raises:
        ManifestError: naming the progdef that cannot be rendered.
        ImagesNotPinned: when an image would run by tag and ``settings.allow_tags`` is off.
    """
    progdefs = [catalogue[name] for name in sorted(catalogue)]
    check_catalogue(progdefs)
    versions = {progdef.name: progdef.version for progdef in progdefs}
    config_map = catalogue_config_map(progdefs, versions, settings)
    objects: list[Any] = [config_map]
    triggers = None
    if settings.triggers_dir is not None:
        triggers = triggers_config_map(settings.triggers_dir, settings)
        objects.append(triggers)
    keda_asks_scheduler = (
        settings.autoscaler == AUTOSCALER_KEDA and settings.scaler == SCALER_EXTERNAL
    )
    if settings.tls_secret and keda_asks_scheduler:
        objects.append(scaler_authentication(settings))
    for progdef in progdefs:
        render = render_scaled_job if progdef.scaling.mode == MODE_JOB else render_progdef
        objects.extend(render(progdef, versions[progdef.name], settings))
    if settings.triggers_port:
        objects.append(triggers_service(settings))
    objects.append(scheduler_deployment(config_map, settings, triggers=triggers))
    if not settings.allow_tags:
        check_pinned(objects)
    return objects


def render_progdef(progdef: Progdef, version: str, settings: DeploySettings) -> list[Any]:
    """Return one progdef version's Deployment, PodDisruptionBudget and (with KEDA)
    ScaledObject, all named :func:`version_name`."""
    objects = [
        executor_deployment(progdef, version, settings),
        disruption_budget(progdef, version, settings),
    ]
    if settings.autoscaler == AUTOSCALER_KEDA:
        objects.append(scaled_object(progdef, version, settings))
    return objects


def check_pinned(objects: Iterable[Mapping[str, Any]]) -> None:
    """Check that every container of the rendered Deployments and ScaledJobs runs an
    image by digest.

    Raises:
        ImagesNotPinned: naming each image that has only a tag, and what runs it.
    """
    unpinned = []
    for obj in objects:
        if obj["kind"] not in ("Deployment", "ScaledJob"):
            continue
        progdef = obj["metadata"]["labels"].get(LABEL_PROGDEF)
        spec = obj["spec"].get("jobTargetRef", obj["spec"])
        for container in spec["template"]["spec"]["containers"]:
            if not is_pinned(container["image"]):
                what = f"progdef {progdef}" if progdef else "the scheduler"
                unpinned.append((container["image"], what))
    if unpinned:
        raise ImagesNotPinned(unpinned)


def check_catalogue(progdefs: Iterable[Progdef]) -> None:
    """Check what progdef.json allows but a Deployment does not.

    Raises:
        ManifestError: when two progdefs map to one Kubernetes name, or a progdef's
            environment would clash with dagyo's own variables or with itself.
    """
    seen: dict[str, str] = {}
    for progdef in progdefs:
        name = object_name(progdef)
        if name in seen:
            raise ManifestError(
                f"progdefs {seen[name]} and {progdef.name} would share the Kubernetes name "
                f"{name}: rename one of them"
            )
        seen[name] = progdef.name
        for variable in [*progdef.env, *progdef.secrets]:
            if variable.startswith(f"{PREFIX.upper()}_"):
                raise ManifestError(
                    f"progdef {progdef.name}: {variable} is reserved for dagyo itself; rename it"
                )
        both = set(progdef.env) & set(progdef.secrets)
        if both:
            raise ManifestError(
                f"progdef {progdef.name}: {', '.join(sorted(both))} is both in env and in "
                "secrets; keep one"
            )


def catalogue_config_map(
    progdefs: Iterable[Progdef], versions: Mapping[str, str], settings: DeploySettings
) -> dict[str, Any]:
    """Return the ConfigMap the scheduler loads the catalogue from.

    Keys: ``<name>.progdef.json`` (the file as written), ``<name>.VERSION`` and, when a
    ScaledObject serves the progdef's mailbox, ``<name>.AUTOSCALER`` (``keda``).
    """
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for progdef in progdefs:
        if progdef.protos and progdef.directory is not None:
            # The scheduler checks flows against the progdef's own types: it gets them
            # compiled, so it needs neither the .proto files nor a compiler.
            compiled = compiled_types(progdef.directory, progdef.protos, source=progdef.name)
            binary[f"{progdef.name}.{COMPILED_FILE}"] = base64.b64encode(compiled).decode()
        path = progdef.directory / "progdef.json" if progdef.directory else None
        text = path.read_text() if path and path.is_file() else json.dumps(progdef.raw, indent=2)
        data[f"{progdef.name}.progdef.json"] = text
        data[f"{progdef.name}.VERSION"] = versions[progdef.name]
        if settings.autoscaler == AUTOSCALER_KEDA:
            data[f"{progdef.name}.AUTOSCALER"] = AUTOSCALER_KEDA
    return scheduler_config_map(CATALOGUE_CONFIG_MAP, settings, data, binary)


def scaler_authentication(settings: DeploySettings) -> dict[str, Any]:
    """Return the TriggerAuthentication by which KEDA trusts the scheduler's certificate."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata_for(SCALER_AUTHENTICATION, settings, labels_for("scheduler")),
        "spec": scaler_authentication_spec(settings.tls_secret),
    }


def catalogue_items(config_map: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return the volume ``items`` that mount ``<name>.<file>`` keys as ``<name>/<file>``."""
    items = []
    for key in sorted([*config_map["data"], *config_map.get("binaryData", {})]):
        name, _, leaf = key.partition(".")
        items.append({"key": key, "path": f"{name}/{leaf}"})
    return items


def catalogue_hash(config_map: Mapping[str, Any]) -> str:
    """Return a hash of the ConfigMap's data; as a pod annotation it restarts the scheduler."""
    text = json.dumps([config_map["data"], config_map.get("binaryData", {})], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scheduler_state(
    settings: DeploySettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the scheduler's state variables, volumes and mounts: ``DAGYO_STATE`` from the
    ``state_secret`` (a PostgreSQL URL) and ``DAGYO_LEASE_S``, or a SQLite file on the
    claim of deploy/k8s/ or an emptyDir."""
    if settings.state_secret:
        url = {"secretKeyRef": {"name": settings.state_secret, "key": STATE_SECRET_KEY}}
        lease = {"name": ENV_LEASE_S, "value": f"{settings.lease_s:g}"}
        return [{"name": ENV_STATE, "valueFrom": url}, lease], [], []
    if settings.state_volume == "pvc":
        volume: dict[str, Any] = {"persistentVolumeClaim": {"claimName": STATE_CLAIM}}
    else:
        volume = {"emptyDir": {}}
    return (
        [{"name": ENV_STATE, "value": f"{STATE_DIR}/scheduler.sqlite3"}],
        [{"name": "state", **volume}],
        [{"name": "state", "mountPath": STATE_DIR}],
    )


def scheduler_deployment(
    config_map: Mapping[str, Any],
    settings: DeploySettings,
    *,
    triggers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the scheduler's Deployment, with the catalogue mounted as one folder per progdef
    and, given its ConfigMap, the triggers folder.

    ``settings.schedulers`` replicas sharing the PostgreSQL state of ``state_secret``,
    rolled one at a time; or one replica on a SQLite file, replaced rather than rolled (a
    SQLite state has one writer).
    """
    state_env, state_volumes, state_mounts = scheduler_state(settings)
    labels = labels_for("scheduler")
    credentials = scheduler_credentials(
        tls_secret=settings.tls_secret, tokens_secret=settings.tokens_secret
    )
    triggered = scheduler_triggers(triggers, settings)
    # Ready when the gRPC health service answers SERVING; the kubelet's gRPC probe speaks
    # no TLS, so with TLS the health endpoint says it (503 while the broker is away).
    readiness: dict[str, Any] = (
        http_probe("/healthz", "metrics", period_s=5, failures=2)
        if settings.tls_secret
        else {
            "grpc": {"port": SCHEDULER_GRPC_PORT},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        }
    )
    container = {
        "name": "scheduler",
        "image": settings.scheduler_image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            *queue_env(settings),
            {"name": ENV_SCHEDULER, "value": f"0.0.0.0:{SCHEDULER_GRPC_PORT}"},
            {"name": ENV_PROGDEFS, "value": CATALOGUE_MOUNT},
            *state_env,
            *credentials.env,
            *triggered.env,
        ],
        "envFrom": objects_env_from(),
        "ports": [
            {"name": "grpc", "containerPort": SCHEDULER_GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": SCHEDULER_METRICS_PORT, "protocol": "TCP"},
            *triggered.ports,
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "startupProbe": http_probe("/healthz", "metrics", period_s=2, failures=30),
        "livenessProbe": http_probe("/healthz", "metrics", period_s=10, failures=3),
        "readinessProbe": readiness,
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "catalogue", "mountPath": CATALOGUE_MOUNT, "readOnly": True},
            *state_mounts,
            {"name": "tmp", "mountPath": "/tmp"},
            *credentials.volume_mounts,
            *triggered.volume_mounts,
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata_for(SCHEDULER_NAME, settings, labels),
        "spec": {
            "replicas": settings.schedulers,
            "selector": {"matchLabels": selector_for("scheduler")},
            # Schedulers sharing PostgreSQL roll one at a time (the others take its flows
            # over); one SQLite writer is replaced rather than rolled.
            "strategy": (
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
                if settings.state_secret
                else {"type": "Recreate"}
            ),
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        ANNOTATION_CATALOGUE: catalogue_hash(config_map),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(SCHEDULER_METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                        **triggered.annotations,
                    },
                },
                "spec": {
                    "serviceAccountName": SCHEDULER_NAME,
                    "terminationGracePeriodSeconds": SCHEDULER_GRACE_S,
                    "securityContext": pod_security(),
                    "affinity": spread_over_machines(selector_for("scheduler")),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "catalogue",
                            "configMap": {
                                "name": config_map["metadata"]["name"],
                                "items": catalogue_items(config_map),
                            },
                        },
                        *state_volumes,
                        {"name": "tmp", "emptyDir": {}},
                        *credentials.volumes,
                        *triggered.volumes,
                    ],
                },
            },
        },
    }
