"""deploy/k8s/: every object valid, the kustomization complete, and it fits what deploy renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.core.brokerurls import split_urls
from executor.core.constants import QueueType
from executor.core.progdef import load_catalogue
from executor.core.settings import check_url, queue_type_of
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.service.auth import parse_tokens
from tests.deploy import K8S, PROGDEFS, check_names_and_labels, validate_kubernetes

KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "queue-secret.example.yaml"
# Secrets applied once by hand, never by the kustomization: the broker's, the scheduler's
# certificate and its token file.
SECRET_TEMPLATES = sorted(K8S.glob("*.example.yaml"))
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
    expected = {path.name for path in _manifest_files()} - {t.name for t in SECRET_TEMPLATES}
    assert set(resources) == expected
    # Re-applying the kustomization must never overwrite the real broker Secret.
    assert not [
        obj for name in resources for obj in _documents(K8S / name) if obj["kind"] == "Secret"
    ]


def test_the_namespace_matches_what_deploy_renders_into() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    (namespace,) = [obj for obj in _static_objects() if obj["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == kustomization["namespace"] == DeploySettings().namespace
    assert {path.name for path in SECRET_TEMPLATES} == {
        "queue-secret.example.yaml",
        "scheduler-tls-secret.example.yaml",
        "tokens-secret.example.yaml",
    }
    for template in SECRET_TEMPLATES:
        assert yaml.safe_load(template.read_text())["metadata"]["namespace"] == "dagyo"


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
    # Every Secret key that deploy renders a reference to is a key of a Secret template
    # (a progdef's own secrets excepted: its author declares them).
    secrets = by_kind["Secret"]
    referenced = []
    for obj in rendered:
        if obj["kind"] == "TriggerAuthentication":
            referenced += [(ref["name"], ref["key"]) for ref in obj["spec"]["secretTargetRef"]]
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for var in container["env"]:
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref["name"].startswith("dagyo-progdef-"):
                    referenced.append((ref["name"], ref["key"]))
        for volume in pod["volumes"]:
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                referenced += [(name, item["key"]) for item in volume["secret"]["items"]]
    assert {name for name, _ in referenced} == {
        "dagyo-queue",
        "dagyo-scheduler-tls",
        "dagyo-tokens",
    }
    for name, key in referenced:
        assert key in secrets[name]["stringData"], (name, key)


def test_the_secret_templates_hold_what_the_scheduler_reads() -> None:
    by_name = {obj["metadata"]["name"]: obj for obj in _static_objects() if obj["kind"] == "Secret"}
    tls = by_name["dagyo-scheduler-tls"]
    assert tls["type"] == "kubernetes.io/tls"
    assert set(tls["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    for pem in tls["stringData"].values():
        assert pem.startswith("-----BEGIN ") and "CHANGE-ME" in pem
    # The token file is the scheduler's format once each placeholder is a real sha256.
    text = by_name["dagyo-tokens"]["stringData"]["tokens.yaml"]
    assert text.count('"CHANGE-ME"') == 2
    filled = text.replace('"CHANGE-ME"', '"' + "a" * 64 + '"', 1).replace(
        '"CHANGE-ME"', '"' + "b" * 64 + '"'
    )
    table = parse_tokens(filled, source="tokens-secret.example.yaml")
    assert {(p.tenant, p.role) for p in table.values()} == {
        ("team-a", "user"),
        ("operators", "admin"),
    }


def test_rabbitmq_is_a_stateful_set_with_a_volume_behind_both_services() -> None:
    objects = _static_objects()
    (stateful,) = [obj for obj in objects if obj["kind"] == "StatefulSet"]
    assert stateful["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}
    assert services[stateful["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    assert any(port["port"] == 5672 for port in services["rabbitmq"]["spec"]["ports"])


def test_rabbitmq_is_three_nodes_that_every_dagyo_process_lists() -> None:
    objects = _static_objects()
    (stateful,) = [obj for obj in objects if obj["kind"] == "StatefulSet"]
    assert stateful["spec"]["replicas"] == 3
    (budget,) = [
        obj
        for obj in objects
        if obj["kind"] == "PodDisruptionBudget" and obj["metadata"]["name"] == "rabbitmq"
    ]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == stateful["spec"]["selector"]["matchLabels"]
    (config,) = [obj for obj in objects if obj["metadata"]["name"] == "rabbitmq-config"]
    peers = config["data"]["20-dagyo.conf"]
    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"]
    check_url(secret["url"])
    urls = split_urls(secret["url"])
    assert len(urls) == 3
    for index, url in enumerate(urls):
        host = f"rabbitmq-{index}.{stateful['spec']['serviceName']}.dagyo.svc"
        assert url.startswith(f"amqp://{secret['username']}:") and f"@{host}:5672/" in url
        assert f"rabbit@{host}.cluster.local" in peers
    assert queue_type_of(secret["url"], {}) is QueueType.QUORUM
    container = stateful["spec"]["template"]["spec"]["containers"][0]
    cookie = [env for env in container["env"] if env["name"] == "RABBITMQ_ERLANG_COOKIE"]
    assert cookie[0]["valueFrom"]["secretKeyRef"] == {"name": "dagyo-queue", "key": "erlang-cookie"}
    assert "erlang-cookie" in secret


def test_the_rabbitmq_operator_alternative_is_documented_beside_it() -> None:
    cluster, budget = _documents(ALTERNATIVES / "rabbitmq-cluster-operator.yaml")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["kind"] == "RabbitmqCluster"
    assert cluster["metadata"]["name"] == "rabbitmq", "the same Service name as rabbitmq.yaml"
    assert cluster["spec"]["replicas"] == 3
    validate_kubernetes(budget)
    assert budget["spec"]["maxUnavailable"] == 1
    # The operator labels its pods with the cluster's name.
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "rabbitmq"}
    assert not (ALTERNATIVES / "kustomization.yaml").exists()
