"""`dagyo deploy`: server-side apply through the real kubernetes client, and its errors.

There is no cluster here, so the kubernetes client talks to a small fake API server on
the loopback interface (tests/deploy/fake_api.py): it answers discovery as a 1.30 API
server does and records every request, so the tests see exactly what the client sends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from executor.core.progdef import load_catalogue
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, apply_objects, render_catalogue
from scheduler.deploy.images import scheduler_image_tag
from scheduler.deploy.platform import render_platform
from scheduler.errors import ApplyFailed, ClusterUnavailable
from tests.deploy import PROGDEFS
from tests.deploy.fake_api import RESOURCES, FakeApiServer, api_client, kubeconfig


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    # A lock left by a real `dagyo build --push` would pin images: use none.
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))
    # Not in a pod, and the dynamic client's discovery cache kept out of the shared one.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _objects(**settings: Any) -> list[dict[str, Any]]:
    """The catalogue as `dagyo deploy` renders it by default: the scheduler image is the
    one build makes."""
    settings.setdefault("scheduler_image", scheduler_image_tag(""))
    settings.setdefault("allow_tags", True)
    return render_catalogue(load_catalogue(PROGDEFS), DeploySettings(**settings))


def _deployed(**settings: Any) -> list[dict[str, Any]]:
    """Everything `dagyo deploy` applies: what the catalogue runs on, then the catalogue."""
    chosen = DeploySettings(
        **{"scheduler_image": scheduler_image_tag(""), "allow_tags": True, **settings}
    )
    return render_platform(chosen) + render_catalogue(load_catalogue(PROGDEFS), chosen)


def test_every_object_is_server_side_applied_as_dagyo(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 0, result.output
    objects = _deployed()
    patches = api_server.patches()
    assert len(patches) == len(objects)
    plural = {kind: name for kinds in RESOURCES.values() for name, kind, _ in kinds}
    prefix = {"v1": "/api/v1"}
    for obj, patch in zip(objects, patches, strict=True):
        group = prefix.get(obj["apiVersion"], f"/apis/{obj['apiVersion']}")
        name = obj["metadata"]["name"]
        assert patch["path"] == f"{group}/namespaces/dagyo/{plural[obj['kind']]}/{name}"
        assert patch["query"] == {"fieldManager": "dagyo", "force": "true"}
        assert patch["content_type"] == "application/apply-patch+yaml"
        assert patch["authorization"] == "Bearer test-token"
        assert patch["body"] == obj
    lines = result.output.splitlines()
    assert lines[0] == "rabbitmqcluster/rabbitmq applied"
    assert "configmap/dagyo-catalogue applied" in lines
    assert lines[-1] == "deployment/dagyo-scheduler applied"


def test_the_statefulset_broker_and_the_development_database_are_applied(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    args = ["--allow-tags", "--progdefs", str(PROGDEFS), "--broker", "statefulset"]
    result = CliRunner().invoke(deploy, [*args, "--profile", "development"])
    assert result.exit_code == 0, result.output
    bodies = [patch["body"] for patch in api_server.patches()]
    assert bodies == _deployed(broker="statefulset", profile="development")
    for applied in ("statefulset/rabbitmq", "role/rabbitmq", "secret/dagyo-state"):
        assert f"{applied} applied" in result.output.splitlines()


def test_a_cluster_without_the_rabbitmq_operator_is_told_to_install_it(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_server.with_rabbitmq_operator = False
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 1
    assert result.output == (
        f"dagyo: the cluster at {api_server.url} serves no RabbitmqCluster "
        "(rabbitmq.com/v1beta1): install the RabbitMQ Cluster Operator first (see "
        "docs/deploy.md), or deploy with --broker statefulset\n"
    )
    assert api_server.patches() == []


def test_apply_objects_takes_another_field_manager(api_server: FakeApiServer) -> None:
    objects = _objects(namespace="dagyo", tls_secret="")[:2]
    seen: list[str] = []
    applied = apply_objects(
        api_client(api_server.url), objects, field_manager="ci", on_applied=seen.append
    )
    version = load_catalogue(PROGDEFS)["assert"].version
    assert applied == seen == ["configmap/dagyo-catalogue", f"deployment/dagyo-assert-{version}"]
    assert [p["query"]["fieldManager"] for p in api_server.patches()] == ["ci", "ci"]


def test_a_cluster_without_keda_is_told_to_install_it(api_server: FakeApiServer) -> None:
    api_server.with_keda = False
    with pytest.raises(ApplyFailed, match="serves no ScaledObject .*install KEDA first"):
        apply_objects(api_client(api_server.url), _objects(tls_secret=""))
    # Everything before the first ScaledObject went through; nothing after it.
    kinds = [patch["body"]["kind"] for patch in api_server.patches()]
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget"]
    # With TLS, KEDA's first object is the TriggerAuthentication: before any executor.
    with pytest.raises(ApplyFailed, match="serves no TriggerAuthentication .*install KEDA"):
        apply_objects(api_client(api_server.url), _objects())
    assert [patch["body"]["kind"] for patch in api_server.patches()][3:] == ["ConfigMap"]
    applied = apply_objects(api_client(api_server.url), _objects(autoscaler="none"))
    assert not [name for name in applied if name.startswith("scaledobject/")]


def test_a_missing_namespace_points_at_deploy_k8s(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--namespace", "elsewhere"])
    assert result.exit_code == 1
    assert "applying RabbitmqCluster/rabbitmq failed: 404" in result.output
    assert 'namespaces "elsewhere" not found' in result.output
    assert "apply deploy/k8s/ first" in result.output
    assert "Traceback" not in result.output


def test_no_cluster_configured_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(ClusterUnavailable, match="no Kubernetes cluster configured"):
        from scheduler.deploy import connect_cluster

        connect_cluster()
    result = CliRunner().invoke(deploy, ["--allow-tags"])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert result.output.startswith("dagyo: no Kubernetes cluster configured")
    assert "KUBECONFIG" in result.output and "--dry-run" in result.output


def test_an_unreachable_api_server_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 on the loopback interface: nothing listens, the connection is refused.
    unreachable = "http://127.0.0.1:9"
    with pytest.raises(ClusterUnavailable, match="cannot reach the Kubernetes API"):
        apply_objects(api_client(unreachable), _objects())
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", unreachable)))
    result = CliRunner().invoke(deploy, ["--allow-tags"])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"dagyo: cannot reach the Kubernetes API at {unreachable}")
    assert "Traceback" not in result.output


def test_dry_run_needs_no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--namespace", "team-a"])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert documents == _deployed(namespace="team-a")
