"""``scaling.mode: job`` in `dagyo deploy`: a KEDA ScaledJob whose pods run one job each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from executor.core.progdef import load_catalogue
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.errors import ImagesNotPinned, ManifestError
from tests.deploy import (
    CRDS,
    check_names_and_labels,
    copy_catalogue,
    validate_any,
    validate_kubernetes,
    validate_scaled_job,
)


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """greet as a heavy progdef (one job per pod, a GPU, a secret), void_sink as it is."""
    folder = copy_catalogue(tmp_path, ("greet", "void_sink"))
    path = folder / "greet" / "progdef.json"
    data = json.loads(path.read_text())
    data["scaling"] = {"mode": "job", "min_executors": 0, "max_executors": 3}
    data["resources"] = {"cpu": "2", "memory": "8Gi", "gpu": 1}
    data["secrets"] = ["API_TOKEN"]
    path.write_text(json.dumps(data))
    return folder


def render(catalogue: Path, **settings: Any) -> list[dict[str, Any]]:
    settings.setdefault("allow_tags", True)
    return render_catalogue(load_catalogue(catalogue), DeploySettings(**settings))


def of(objects: list[dict[str, Any]], progdef: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        if obj["metadata"]["labels"].get("dagyo.io/progdef") == progdef:
            found.setdefault(obj["kind"], []).append(obj)
    return found


@pytest.mark.parametrize("scaler", ["external", "rabbitmq"])
def test_mode_job_renders_one_valid_scaled_job_and_no_deployment(
    catalogue: Path, scaler: str
) -> None:
    objects = render(catalogue, scaler=scaler)
    for obj in objects:
        validate_any(obj)
        check_names_and_labels(obj)
    greet = of(objects, "greet")
    assert sorted(greet) == ["ScaledJob"], "no Deployment, budget or ScaledObject"
    assert sorted(of(objects, "void_sink")) == [
        "Deployment",
        "PodDisruptionBudget",
        "ScaledObject",
    ]
    (scaled,) = greet["ScaledJob"]
    progdef = load_catalogue(catalogue)["greet"]
    assert scaled["metadata"]["name"] == f"dagyo-greet-{progdef.version}"
    assert scaled["metadata"]["labels"]["dagyo.io/version"] == progdef.version
    spec = scaled["spec"]
    job = spec["jobTargetRef"]
    assert (job["parallelism"], job["completions"], job["backoffLimit"]) == (1, 1, 0)
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "executor", "/progdef", "--one-job"]
    env = {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}
    assert env["DAGYO_JOBS"] == progdef.mailbox
    assert env["API_TOKEN"] == {"secretKeyRef": {"name": "dagyo-progdef-greet", "key": "API_TOKEN"}}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["terminationGracePeriodSeconds"] >= 60, "SIGTERM drains the one job"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 3)
    assert spec["rollout"] == {"strategy": "gradual"}, "an upgrade never deletes a running Job"
    (trigger,) = spec["triggers"]
    if scaler == "external":
        assert trigger == {
            "type": "external-push",
            "name": "demand",
            "metadata": {
                "scalerAddress": "dagyo-scheduler.dagyo.svc:50051",
                "progdef": "greet",
                "version": progdef.version,
            },
            # The scheduler serves TLS: KEDA trusts it by the CA of its Secret.
            "authenticationRef": {"name": "dagyo-scheduler-ca"},
        }
        assert spec["scalingStrategy"] == {"strategy": "default"}
    else:
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == progdef.mailbox
        assert trigger["metadata"]["value"] == "1"
        assert spec["scalingStrategy"] == {"strategy": "accurate"}
    (config_map,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    assert config_map["data"]["greet.AUTOSCALER"] == "keda"


def test_mode_job_needs_keda(catalogue: Path) -> None:
    with pytest.raises(ManifestError, match="progdef greet: scaling.mode job needs KEDA"):
        render(catalogue, autoscaler="none")


def test_a_scaled_job_pod_runs_its_image_by_digest_too(catalogue: Path) -> None:
    with pytest.raises(ImagesNotPinned, match=r"progdef greet"):
        render(catalogue, allow_tags=False)


def test_the_scaled_job_validator_is_strict(catalogue: Path) -> None:
    def scaled() -> dict[str, Any]:
        (found,) = of(render(catalogue), "greet")["ScaledJob"]
        return found

    wrong = scaled()
    wrong["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        validate_scaled_job(wrong)
    wrong = scaled()
    wrong["spec"]["jobTargetRef"]["parallelism"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_scaled_job(wrong)
    wrong = scaled()
    wrong["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_scaled_job(wrong)


def test_the_shipped_scaled_job_crd_is_a_valid_custom_resource_definition() -> None:
    crd = yaml.safe_load((CRDS / "keda-scaledjob.yaml").read_text())
    validate_kubernetes(crd)
    assert crd["spec"]["group"] == "keda.sh" and crd["spec"]["names"]["kind"] == "ScaledJob"
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["jobTargetRef", "triggers"]


def test_a_node_progdefs_scaled_job_runs_the_node_executor(tmp_path: Path) -> None:
    folder = copy_catalogue(tmp_path, ("upper",))
    path = folder / "upper" / "progdef.json"
    data = json.loads(path.read_text())
    data["scaling"] = {"mode": "job", "min_executors": 0, "max_executors": 3}
    path.write_text(json.dumps(data))
    (scaled,) = of(render(folder, autoscaler="keda"), "upper")["ScaledJob"]
    validate_any(scaled)
    (container,) = scaled["spec"]["jobTargetRef"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "node",
        "/opt/dagyo/sdk/bin/dagyo-executor.js",
        "/progdef",
        "--one-job",
    ]
