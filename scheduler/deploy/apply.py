"""Server-side apply of rendered objects through the kubernetes client's dynamic client.

Server-side apply with one field manager (``dagyo``) makes ``dagyo deploy`` idempotent:
the API server merges what dagyo sends with what others own (KEDA owns a Deployment's
replicas, which dagyo therefore never sends) and records which fields are dagyo's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from scheduler.errors import ApplyFailed, ClusterUnavailable

FIELD_MANAGER = "dagyo"
# Objects dagyo does not create itself, and what to do when the cluster lacks them.
_MISSING_KIND_HINTS = {
    "keda.sh": "install KEDA first (see docs/deploy.md), or deploy with --autoscaler none",
    "rabbitmq.com": "install the RabbitMQ Cluster Operator first (see docs/deploy.md), or "
    "deploy with --broker statefulset",
}


def connect_cluster(*, context: str | None = None) -> client.ApiClient:
    """Return an API client for the current kubeconfig context, or the pod's own cluster.

    Args:
        context: a kubeconfig context to use instead of the current one.

    Raises:
        ClusterUnavailable: when neither a kubeconfig nor an in-cluster service account
            is found.
    """
    # Read KUBECONFIG now: the kubernetes client reads it once, when first imported.
    kubeconfig = os.environ.get("KUBECONFIG") or None
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    if context is None:
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass
    where = kubeconfig or "~/.kube/config"
    raise ClusterUnavailable(
        f"no Kubernetes cluster configured ({where}: {reason}): set KUBECONFIG to your "
        "cluster's kubeconfig (or pass --context), or print the objects with "
        "`dagyo deploy --dry-run`"
    )


def apply_objects(
    api_client: client.ApiClient,
    objects: Iterable[Mapping[str, Any]],
    *,
    field_manager: str = FIELD_MANAGER,
    discovery_cache: Path | None = None,
    on_applied: Callable[[str], None] | None = None,
) -> list[str]:
    """Server-side apply each object in order; return ``kind/name`` of each one applied.

    Args:
        api_client: a client for the target cluster (see :func:`connect_cluster`).
        objects: the rendered objects, each with its namespace.
        field_manager: the field manager the API server records for dagyo's fields.
        discovery_cache: where the dynamic client caches API discovery (default: the
            kubernetes client's own file in the temporary folder).
        on_applied: called with ``kind/name`` after each object is applied.

    Raises:
        ClusterUnavailable: when the API server does not answer.
        ApplyFailed: at the first object the API server refuses.
    """
    host = api_client.configuration.host
    dynamic = dynamic_client(api_client, discovery_cache=discovery_cache)
    applied = []
    for obj in objects:
        api_version, kind = obj["apiVersion"], obj["kind"]
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        try:
            resource = dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as e:
            hint = _MISSING_KIND_HINTS.get(api_version.partition("/")[0], "")
            raise ApplyFailed(
                f"the cluster at {host} serves no {kind} ({api_version})"
                + (f": {hint}" if hint else "")
            ) from e
        try:
            # A JSON string is YAML too; as a string the body reaches the API server as
            # sent, under the apply-patch content type, in every kubernetes client version.
            dynamic.server_side_apply(
                resource,
                body=json.dumps(obj),
                name=name,
                namespace=namespace,
                field_manager=field_manager,
                force_conflicts=True,
            )
        except DynamicApiError as e:
            raise ApplyFailed(_refused(kind, name, namespace, e)) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ClusterUnavailable(unreachable_text(host, e)) from e
        applied.append(f"{kind.lower()}/{name}")
        if on_applied is not None:
            on_applied(applied[-1])
    return applied


def dynamic_client(api_client: client.ApiClient, *, discovery_cache: Path | None = None) -> Any:
    """Return a dynamic client of the cluster, its API discovery done.

    Raises:
        ClusterUnavailable: when the API server does not answer, or refuses discovery.
    """
    host = api_client.configuration.host
    try:
        return DynamicClient(
            api_client, cache_file=str(discovery_cache) if discovery_cache else None
        )
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
        raise ClusterUnavailable(unreachable_text(host, e)) from e
    except DynamicApiError as e:
        raise ClusterUnavailable(
            f"the Kubernetes API at {host} refused discovery: {status_text(e)}"
        ) from e


def unreachable_text(host: str, error: BaseException) -> str:
    """Return what to say of an API server that did not answer, and what to do."""
    reason = getattr(error, "reason", None) or error
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return (
        f"cannot reach the Kubernetes API at {host} ({text[:160]}): check that the cluster "
        "is up and KUBECONFIG (or --context) points at it, or print the objects with "
        "`dagyo deploy --dry-run`"
    )


def status_text(error: DynamicApiError) -> str:
    """Return an API server's refusal as ``STATUS REASON: message``."""
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{error.status} {error.reason}" + (f": {message}" if message else "")


def _refused(kind: str, name: str, namespace: str | None, error: DynamicApiError) -> str:
    text = f"applying {kind}/{name} failed: {status_text(error)}"
    if error.status == 404 and namespace:
        text += f" (does namespace {namespace} exist? apply deploy/k8s/ first, see docs/deploy.md)"
    elif error.status in (401, 403):
        text += f" (the kubeconfig's user may not apply {kind} in {namespace or 'the cluster'})"
    return text
