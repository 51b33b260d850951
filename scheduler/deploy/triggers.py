"""The scheduler's triggers in Kubernetes: the folder as a ConfigMap, HTTP as a Service.

``dagyo deploy --triggers DIR`` renders the trigger files of ``DIR`` and the flow files they
name as the ConfigMap ``dagyo-triggers``, mounted read-only into the scheduler as its
``DAGYO_TRIGGERS`` folder; the scheduler reads it at start, so a hash of it is an
annotation of its pod and a changed trigger restarts it. ``--triggers-http PORT`` makes the
scheduler accept CloudEvents on that port (``DAGYO_TRIGGERS_HTTP``) behind the Service
``dagyo-triggers``, kept apart from the gRPC Service so event sources can be let in
without the API. The files are checked as the scheduler checks them, before anything is
applied: a trigger the scheduler would leave out is refused here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.core.errors import DagyoError
from scheduler.deploy.manifests import (
    labels_for,
    metadata_for,
    scheduler_config_map,
    selector_for,
)
from scheduler.deploy.settings import (
    DeploySettings,
)
from scheduler.errors import ManifestError
from scheduler.service.config import ENV_TRIGGERS, ENV_TRIGGERS_HTTP
from scheduler.service.triggers import load_triggers, trigger_files

TRIGGERS_NAME = "dagyo-triggers"
TRIGGERS_MOUNT = "/etc/dagyo/triggers"
ANNOTATION_TRIGGERS = "dagyo.io/triggers"
# What the API server allows as a ConfigMap key, and the most a ConfigMap may hold.
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_MAP_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TriggersMount:
    """What the scheduler's pod gets for its triggers.

    Attributes:
        env: ``DAGYO_TRIGGERS`` and, with HTTP, ``DAGYO_TRIGGERS_HTTP``.
        ports: the container port ``triggers``, with HTTP.
        volume_mounts: the folder, read-only.
        volumes: the ConfigMap volume.
        annotations: the hash of the files, which restarts the scheduler when they change.
    """

    env: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


def triggers_config_map(directory: Path, settings: DeploySettings) -> dict[str, Any]:
    """Return the ConfigMap of the trigger files of ``directory`` and the flows they name.

    Raises:
        ManifestError: when the folder cannot be read, a file name cannot be a ConfigMap
            key, a trigger is one the scheduler would leave out (every problem listed), a
            flow file is outside the folder, or the files exceed a ConfigMap's 1 MiB.
    """
    try:
        files = trigger_files(directory)
    except OSError as e:
        raise ManifestError(
            f"the triggers folder {directory} cannot be read ({e.strerror or e}): name a "
            "folder of trigger files with --triggers (DAGYO_TRIGGERS)"
        ) from None
    for path in files:
        if not _KEY.match(path.name):
            raise ManifestError(
                f"trigger file {path.name!r} in {directory}: a ConfigMap key holds only "
                "letters, digits, '-', '_' and '.': rename it"
            )
    try:
        valid, invalid = load_triggers(directory, tenant_required=bool(settings.tokens_secret))
    except DagyoError as e:
        raise ManifestError(str(e)) from None
    problems = [line for trigger in invalid for line in trigger.problems]
    folder = directory.resolve()
    for trigger in valid:
        if trigger.flow_path.resolve().parent != folder:
            problems.append(
                f"trigger {trigger.name}: its flow file {trigger.flow_path} is not in the "
                f"triggers folder {directory}, and the ConfigMap holds that folder only: "
                "move the flow file beside the trigger and name it by its file name"
            )
    if problems:
        raise ManifestError(
            "\n".join(
                [
                    *problems,
                    "the scheduler would leave these triggers out: fix them, "
                    "or deploy without --triggers",
                ]
            )
        )
    paths = sorted({*(t.file for t in valid), *(t.flow_path for t in valid)})
    data = {path.name: path.read_text(encoding="utf-8") for path in paths}
    size = sum(len(key) + len(text.encode()) for key, text in data.items())
    if size > CONFIG_MAP_MAX_BYTES:
        raise ManifestError(
            f"the triggers folder {directory} holds {size} bytes of triggers and flows, more "
            f"than a ConfigMap's {CONFIG_MAP_MAX_BYTES}: split the flows or shorten them"
        )
    return scheduler_config_map(TRIGGERS_NAME, settings, data)


def triggers_service(settings: DeploySettings) -> dict[str, Any]:
    """Return the Service by which event sources POST CloudEvents to the scheduler."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(TRIGGERS_NAME, settings, labels_for("scheduler")),
        "spec": {
            "selector": selector_for("scheduler"),
            "ports": [
                {
                    "name": "http",
                    "port": settings.triggers_port,
                    "targetPort": "triggers",
                    "protocol": "TCP",
                }
            ],
        },
    }


def scheduler_triggers(
    config_map: Mapping[str, Any] | None, settings: DeploySettings
) -> TriggersMount:
    """Return what the scheduler's pod gets for the triggers ConfigMap (None: no triggers)."""
    if config_map is None:
        return TriggersMount()
    mount = TriggersMount(
        env=[{"name": ENV_TRIGGERS, "value": TRIGGERS_MOUNT}],
        volume_mounts=[{"name": "triggers", "mountPath": TRIGGERS_MOUNT, "readOnly": True}],
        # No items: every key is a file of the folder, as it was beside its triggers.
        volumes=[{"name": "triggers", "configMap": {"name": config_map["metadata"]["name"]}}],
        annotations={ANNOTATION_TRIGGERS: _hash(config_map["data"])},
    )
    if settings.triggers_port:
        # Every address of the pod: the Service reaches it there, not on loopback.
        mount.env.append({"name": ENV_TRIGGERS_HTTP, "value": f"0.0.0.0:{settings.triggers_port}"})
        mount.ports.append(
            {"name": "triggers", "containerPort": settings.triggers_port, "protocol": "TCP"}
        )
    return mount


def _hash(data: Mapping[str, str]) -> str:
    text = json.dumps(dict(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
