"""The development profile's PostgreSQL: one pod on a volume, its Service and the Secret
naming it, so ``dagyo deploy --profile development`` runs the schedulers' shared state with
nothing else to install.

For production use a managed PostgreSQL or one run by an operator (CloudNativePG), and
give its URL in the ``state_secret`` (docs/deploy.md): this one has no replica, no
backup and a password anyone who reads the source knows.
"""

from __future__ import annotations

from typing import Any

from executor.core.constants import PREFIX
from scheduler.deploy.manifests import metadata_for
from scheduler.deploy.settings import DeploySettings

DATABASE_NAME = f"{PREFIX}-postgresql"
DATABASE_IMAGE = "postgres:16.4"
DATABASE_PORT = 5432
DATABASE_USER = PREFIX
# Development only, and said so: a known password, in a Secret like any other.
DEVELOPMENT_PASSWORD = "dagyo-development-only"
DATA_DIR = "/var/lib/postgresql/data"


def database_labels() -> dict[str, str]:
    """The labels of the development PostgreSQL's objects (and the selector of its pod)."""
    return {"app.kubernetes.io/name": DATABASE_NAME, "app.kubernetes.io/part-of": PREFIX}


def database_url(settings: DeploySettings) -> str:
    """The URL the schedulers reach the development PostgreSQL by."""
    host = f"{DATABASE_NAME}.{settings.namespace}.svc"
    return f"postgresql://{DATABASE_USER}:{DEVELOPMENT_PASSWORD}@{host}:{DATABASE_PORT}/{PREFIX}"


def render_database(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the Secret ``state_secret`` (keys ``url`` for the schedulers, ``password``
    for the server), the Service and the StatefulSet of one PostgreSQL pod."""
    labels = database_labels()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata_for(settings.state_secret, settings, labels),
        "type": "Opaque",
        "stringData": {"url": database_url(settings), "password": DEVELOPMENT_PASSWORD},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(DATABASE_NAME, settings, labels),
        "spec": {
            "selector": labels,
            "ports": [{"name": "postgresql", "port": DATABASE_PORT, "targetPort": "postgresql"}],
        },
    }
    ready = {
        "exec": {"command": ["pg_isready", "-U", DATABASE_USER, "-d", PREFIX]},
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    container = {
        "name": "postgresql",
        "image": DATABASE_IMAGE,
        "env": [
            {"name": "POSTGRES_USER", "value": DATABASE_USER},
            {"name": "POSTGRES_DB", "value": PREFIX},
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": settings.state_secret, "key": "password"}},
            },
            # A folder of the volume, not its root (which may hold lost+found).
            {"name": "PGDATA", "value": f"{DATA_DIR}/pgdata"},
        ],
        "ports": [{"name": "postgresql", "containerPort": DATABASE_PORT}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": ready,
        "livenessProbe": {**ready, "periodSeconds": 20, "failureThreshold": 6},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "run", "mountPath": "/var/run/postgresql"},
        ],
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata_for(DATABASE_NAME, settings, labels),
        "spec": {
            "serviceName": DATABASE_NAME,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    # The official image's postgres user.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 999,
                        "runAsGroup": 999,
                        "fsGroup": 999,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "4Gi"}},
                    },
                }
            ],
        },
    }
    return [secret, service, stateful_set]
