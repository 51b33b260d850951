"""deploy/k8s/: every object valid, the kustomization complete, and it fits what deploy renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.core.progdef import load_catalogue
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.service.auth import parse_tokens
from tests.deploy import K8S, PROGDEFS, check_names_and_labels, validate_kubernetes

KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "queue-secret.example.yaml"
# Secrets applied once by hand, never by the kustomization: the broker's, the scheduler's
# certificate and its token file.
SECRET_TEMPLATES = sorted(K8S.glob("*.example.yaml"))


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
        "state-secret.example.yaml",
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
    # The claim serves the one scheduler of a SQLite state.
    alone = render_catalogue(
        load_catalogue(PROGDEFS),
        DeploySettings(allow_tags=True, schedulers=1, state_secret=""),
    )
    (sqlite,) = [o for o in alone if o["metadata"]["name"] == "dagyo-scheduler"]
    (state,) = [v for v in sqlite["spec"]["template"]["spec"]["volumes"] if v["name"] == "state"]
    assert state["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"]
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
        "dagyo-state",
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
