"""deploy/k8s/: every object valid, the kustomization complete, and it fits what deploy renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.progdef import load_catalogue
from scheduler.deploy import DeploySettings, render_catalogue
from tests.deploy import K8S, PROGDEFS, check_names_and_labels, validate_kubernetes

KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "queue-secret.example.yaml"
ALTERNATIVES = K8S / "alternatives"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)


def _static_objects() -> list[dict[str, Any]]:
    return [obj for path in _manifest_files() for obj in _documents(path)]


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda path: path.name)
def test_every_object_in_deploy_k8s_validates_strictly(path: Path) -> None:
    objects = _documents(path)
    assert objects, f"{path.name} holds no object"
    for obj in objects:
        validate_kubernetes(obj)
        check_names_and_labels(obj)


def test_the_kustomization_names_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources"}
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    expected = {path.name for path in _manifest_files()} - {SECRET_TEMPLATE.name}
    assert set(resources) == expected
    # Re-applying the kustomization must never overwrite the real broker Secret.
    assert not [
        obj for name in resources for obj in _documents(K8S / name) if obj["kind"] == "Secret"
    ]


def test_the_namespace_matches_what_deploy_renders_into() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    (namespace,) = [obj for obj in _static_objects() if obj["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == kustomization["namespace"] == DeploySettings().namespace
    assert yaml.safe_load(SECRET_TEMPLATE.read_text())["metadata"]["namespace"] == "dagyo"


def test_the_static_parts_serve_the_rendered_scheduler_and_executors() -> None:
    objects = _static_objects()
    rendered = render_catalogue(load_catalogue(PROGDEFS), DeploySettings(allow_tags=True))
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    (scheduler,) = [o for o in rendered if o["metadata"]["name"] == "dagyo-scheduler"]
    pod = scheduler["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] in by_kind["ServiceAccount"]
    (state,) = [v for v in pod["volumes"] if v["name"] == "state"]
    assert state["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"]
    service = by_kind["Service"]["dagyo-scheduler"]
    labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {port["name"] for port in pod["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    binding = by_kind["RoleBinding"]["dagyo-scheduler"]
    assert binding["roleRef"]["name"] in by_kind["Role"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    # Every secretKeyRef that deploy renders names a key of the Secret template.
    secret = by_kind["Secret"]["dagyo-queue"]
    for obj in rendered:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for var in container["env"]:
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "dagyo-queue":
                    assert ref["key"] in secret["stringData"]


def test_rabbitmq_is_a_stateful_set_with_a_volume_behind_both_services() -> None:
    objects = _static_objects()
    (stateful,) = [obj for obj in objects if obj["kind"] == "StatefulSet"]
    assert stateful["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}
    assert services[stateful["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    assert any(port["port"] == 5672 for port in services["rabbitmq"]["spec"]["ports"])
    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())
    assert "rabbitmq.dagyo.svc:5672" in secret["stringData"]["url"]
    assert secret["stringData"]["url"].startswith(f"amqp://{secret['stringData']['username']}:")


def test_the_rabbitmq_operator_alternative_is_documented_beside_it() -> None:
    (cluster,) = _documents(ALTERNATIVES / "rabbitmq-cluster-operator.yaml")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["kind"] == "RabbitmqCluster"
    assert cluster["metadata"]["name"] == "rabbitmq", "the same Service name as rabbitmq.yaml"
    assert not (ALTERNATIVES / "kustomization.yaml").exists()
