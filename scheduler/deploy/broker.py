"""RabbitMQ as ``dagyo deploy`` renders it: a cluster of three nodes and its budget.

``--broker operator`` (the default) renders a ``RabbitmqCluster`` of the RabbitMQ Cluster
Operator, which makes the StatefulSet, the Services and the credentials itself;
``--broker statefulset`` renders them here, the nodes finding each other through the
Kubernetes API (the ``rabbitmq_peer_discovery_k8s`` plugin); ``--broker none`` renders no
broker (one run elsewhere). Either way a PodDisruptionBudget keeps two of three nodes up
through voluntary disruptions: the quorum every quorum queue needs.
"""

from __future__ import annotations

from typing import Any

from executor.core.constants import PREFIX
from scheduler.deploy.manifests import metadata_for, spread_over_machines
from scheduler.deploy.settings import (
    BROKER_OPERATOR,
    BROKER_STATEFULSET,
    QUEUE_SECRET,
    DeploySettings,
)

BROKER_NAME = "rabbitmq"
BROKER_NODES = 3
BROKER_IMAGE = "rabbitmq:3.13.7-management"
AMQP_PORT = 5672
# The operator's headless Service and pod names: <cluster>-nodes, <cluster>-server-N.
OPERATOR_HEADLESS = f"{BROKER_NAME}-nodes"
STATEFULSET_HEADLESS = f"{BROKER_NAME}-headless"
BROKER_STORAGE = "8Gi"
# What every node runs with, whichever renders it.
BROKER_CONFIG = """\
# Headroom under the container's memory limit: past the watermark RabbitMQ blocks
# publishers (the streams' backpressure) instead of being killed.
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 1GB
# A slow job may hold a prefetched stream frame unacknowledged for longer than the default
# 30 minutes, which would close its executor's channel.
consumer_timeout = 86400000
# A node cut off from the other two pauses rather than serve a split cluster.
cluster_partition_handling = pause_minority
"""
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_peer_discovery_k8s].\n"


def broker_labels() -> dict[str, str]:
    """The labels of the broker's objects; its pods carry ``app.kubernetes.io/name:
    rabbitmq`` (the operator names them for the cluster, so the budget selects both)."""
    return {"app.kubernetes.io/name": BROKER_NAME, "app.kubernetes.io/part-of": PREFIX}


def node_hosts(settings: DeploySettings) -> list[str]:
    """The three nodes' stable DNS names, the hosts of ``DAGYO_QUEUE``'s three URLs."""
    if settings.broker == BROKER_OPERATOR:
        pods, service = f"{BROKER_NAME}-server", OPERATOR_HEADLESS
    else:
        pods, service = BROKER_NAME, STATEFULSET_HEADLESS
    return [f"{pods}-{i}.{service}.{settings.namespace}.svc" for i in range(BROKER_NODES)]


def render_broker(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the broker's objects, in apply order (none for ``--broker none``)."""
    if settings.broker == BROKER_OPERATOR:
        return [rabbitmq_cluster(settings), broker_budget(settings)]
    if settings.broker == BROKER_STATEFULSET:
        return [*peer_discovery_access(settings), *stateful_set_objects(settings)]
    return []


def rabbitmq_cluster(settings: DeploySettings) -> dict[str, Any]:
    """Return the ``RabbitmqCluster`` (``rabbitmq.com/v1beta1``) of three nodes."""
    return {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "RabbitmqCluster",
        "metadata": metadata_for(BROKER_NAME, settings, broker_labels()),
        "spec": {
            "replicas": BROKER_NODES,
            "image": BROKER_IMAGE,
            "resources": _resources(),
            "persistence": {"storage": BROKER_STORAGE},
            "affinity": spread_over_machines({"app.kubernetes.io/name": BROKER_NAME}),
            "terminationGracePeriodSeconds": 120,
            "rabbitmq": {"additionalConfig": BROKER_CONFIG},
        },
    }


def broker_budget(settings: DeploySettings) -> dict[str, Any]:
    """Return the PodDisruptionBudget that evicts one node of three at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata_for(BROKER_NAME, settings, broker_labels()),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": BROKER_NAME}},
        },
    }


def peer_discovery_access(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the ServiceAccount, Role and RoleBinding by which each node lists its peers
    (the headless Service's endpoints) and records events."""
    metadata = metadata_for(BROKER_NAME, settings, broker_labels())
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata,
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": BROKER_NAME,
            },
            "subjects": [{"kind": "ServiceAccount", "name": BROKER_NAME}],
        },
    ]


def stateful_set_objects(settings: DeploySettings) -> list[dict[str, Any]]:
    """Return the ConfigMap, the two Services, the StatefulSet and the budget of the
    broker run without the operator."""
    labels = broker_labels()
    selector = {"app.kubernetes.io/name": BROKER_NAME}
    suffix = f".{STATEFULSET_HEADLESS}.{settings.namespace}.svc.cluster.local"
    discovery = (
        "cluster_formation.peer_discovery_backend = k8s\n"
        "cluster_formation.k8s.host = kubernetes.default.svc\n"
        "cluster_formation.k8s.address_type = hostname\n"
        f"cluster_formation.k8s.service_name = {STATEFULSET_HEADLESS}\n"
        f"cluster_formation.k8s.hostname_suffix = {suffix}\n"
        # A node gone for good is only logged: a human decides to forget it.
        "cluster_formation.node_cleanup.only_log_warning = true\n"
    )
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata_for(f"{BROKER_NAME}-config", settings, labels),
        "data": {"20-dagyo.conf": BROKER_CONFIG + discovery, "enabled_plugins": PLUGINS},
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(STATEFULSET_HEADLESS, settings, labels),
        "spec": {
            # Stable names for the nodes, also before they are ready (a node needs its
            # own name to boot).
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [_port("epmd", 4369), _port("amqp", AMQP_PORT), _port("dist", 25672)],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(BROKER_NAME, settings, labels),
        "spec": {
            "selector": selector,
            "ports": [
                _port("amqp", AMQP_PORT),
                _port("management", 15672),
                _port("prometheus", 15692),
            ],
        },
    }
    return [config, headless, service, _stateful_set(settings, suffix), broker_budget(settings)]


def _stateful_set(settings: DeploySettings, suffix: str) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": BROKER_NAME}

    def secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": QUEUE_SECRET, "key": key}}

    container = {
        "name": "rabbitmq",
        "image": BROKER_IMAGE,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
            # The name its peers know it by, fixed across restarts (its data folder is
            # named for it).
            {"name": "RABBITMQ_NODENAME", "value": f"rabbit@$(POD_NAME){suffix}"},
            {"name": "RABBITMQ_ERLANG_COOKIE", "valueFrom": secret("erlang-cookie")},
            {"name": "RABBITMQ_DEFAULT_USER", "valueFrom": secret("username")},
            {"name": "RABBITMQ_DEFAULT_PASS", "valueFrom": secret("password")},
        ],
        "ports": [
            {"name": "amqp", "containerPort": AMQP_PORT},
            {"name": "management", "containerPort": 15672},
            {"name": "prometheus", "containerPort": 15692},
            {"name": "epmd", "containerPort": 4369},
            {"name": "dist", "containerPort": 25672},
        ],
        "resources": _resources(),
        "startupProbe": _ping(period_s=10, timeout_s=10, failures=30),
        "livenessProbe": _ping(period_s=30, timeout_s=15, failures=3),
        "readinessProbe": {
            "tcpSocket": {"port": "amqp"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/rabbitmq"},
            {
                "name": "config",
                "mountPath": "/etc/rabbitmq/conf.d/20-dagyo.conf",
                "subPath": "20-dagyo.conf",
                "readOnly": True,
            },
            {
                "name": "config",
                "mountPath": "/etc/rabbitmq/enabled_plugins",
                "subPath": "enabled_plugins",
                "readOnly": True,
            },
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata_for(BROKER_NAME, settings, broker_labels()),
        "spec": {
            "serviceName": STATEFULSET_HEADLESS,
            "replicas": BROKER_NODES,
            # The nodes start together: each waits for the others to form the cluster.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": broker_labels()},
                "spec": {
                    # Its token lets the node ask the API for its peers.
                    "serviceAccountName": BROKER_NAME,
                    "affinity": spread_over_machines(selector),
                    # Time to close connections and sync queues to disk before SIGKILL.
                    "terminationGracePeriodSeconds": 120,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 999,
                        "runAsGroup": 999,
                        "fsGroup": 999,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": f"{BROKER_NAME}-config"}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": broker_labels()},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": BROKER_STORAGE}},
                    },
                }
            ],
        },
    }


def _resources() -> dict[str, Any]:
    return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name}


def _ping(*, period_s: int, timeout_s: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": ["rabbitmq-diagnostics", "-q", "ping"]},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failures,
    }
