"""``dagyo deploy --prune``: delete the executor objects of progdef versions the scheduler
retired.

Each progdef version has its own Deployment, PodDisruptionBudget and ScaledObject (or
ScaledJob), so an old version's executors keep draining its mailbox after an upgrade. Only
the scheduler knows when no job of a version waits or runs: it then *retires* the version
(scheduler/service/versions.py) and reports it so in ``Versions``. What is deleted here is
decided by that report alone: the objects of each version reported ``retired``, never those
of a version reported otherwise, nor of the catalogue's current version of a progdef.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes import client
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from executor.core.progdef import Progdef
from scheduler.deploy.apply import dynamic_client, status_text, unreachable_text
from scheduler.deploy.manifests import (
    version_name,
)
from scheduler.deploy.settings import (
    DeploySettings,
)
from scheduler.errors import ApplyFailed, ClusterUnavailable
from scheduler.service.versions import RETIRED

# The kinds of a version's objects, in delete order: the autoscaler first, so it does not
# scale up what is being deleted; a version has either the first or the second.
VERSION_KINDS = (
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "ScaledJob"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
)


class ReportedVersion(Protocol):
    """A version as the scheduler reports it (a ``dagyo.v1.ProgdefVersion``)."""

    progdef: str
    version: str
    state: str


@dataclass(frozen=True)
class ObjectRef:
    """One Kubernetes object by kind and name."""

    api_version: str
    kind: str
    name: str
    namespace: str

    def describe(self) -> str:
        """Return ``kind/name``, as ``dagyo deploy`` prints what it applied."""
        return f"{self.kind.lower()}/{self.name}"


def retired_objects(
    versions: Iterable[ReportedVersion],
    catalogue: Mapping[str, Progdef],
    settings: DeploySettings,
) -> list[ObjectRef]:
    """Return the objects of each version the scheduler reports retired, in delete order.

    Args:
        versions: what the scheduler's ``Versions`` answered.
        catalogue: the catalogue being deployed: its current versions are never pruned,
            whatever the report says.
        settings: the namespace.
    """
    refs: list[ObjectRef] = []
    for reported in versions:
        if reported.state != RETIRED:
            continue
        current = catalogue.get(reported.progdef)
        if current is not None and current.version == reported.version:
            continue
        name = version_name(reported.progdef, reported.version)
        refs.extend(
            ObjectRef(api_version, kind, name, settings.namespace)
            for api_version, kind in VERSION_KINDS
        )
    return refs


def delete_objects(
    api_client: client.ApiClient,
    refs: Iterable[ObjectRef],
    *,
    on_deleted: Callable[[str], None] | None = None,
) -> list[str]:
    """Delete each object; return ``kind/name`` of each one deleted.

    An object that is not there (a version that had a ScaledJob has no ScaledObject), or
    of a kind the cluster does not serve (KEDA's, without KEDA), is skipped. Pods and Jobs
    the objects own are deleted by the garbage collector in the background.

    Raises:
        ClusterUnavailable: when the API server does not answer.
        ApplyFailed: at the first delete the API server refuses.
    """
    host = api_client.configuration.host
    dynamic = dynamic_client(api_client)
    deleted: list[str] = []
    for ref in refs:
        try:
            resource = dynamic.resources.get(api_version=ref.api_version, kind=ref.kind)
        except ResourceNotFoundError:
            continue
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        try:
            dynamic.delete(resource, name=ref.name, namespace=ref.namespace, body=body)
        except DynamicApiError as e:
            if e.status == 404:
                continue
            raise ApplyFailed(
                f"deleting {ref.kind}/{ref.name} failed: {status_text(e)}"
                + (
                    f" (the kubeconfig's user may not delete {ref.kind} in {ref.namespace})"
                    if e.status in (401, 403)
                    else ""
                )
            ) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ClusterUnavailable(unreachable_text(host, e)) from e
        deleted.append(ref.describe())
        if on_deleted is not None:
            on_deleted(deleted[-1])
    return deleted
