"""What `dagyo deploy` renders: valid objects, the right mailbox, the right knobs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from executor.core.progdef import load_catalogue
from scheduler.deploy import DeploySettings, render_catalogue, to_yaml
from scheduler.deploy.catalogue import CATALOGUE_MOUNT
from scheduler.deploy.images import image_reference
from scheduler.errors import ImagesNotPinned, ManifestError
from tests.deploy import (
    CRDS,
    PROGDEFS,
    SAMPLE_PROGDEFS,
    check_names_and_labels,
    copy_catalogue,
    validate_any,
    validate_kubernetes,
    validate_scaled_object,
)


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set inside an executor image only; here it would stand for every progdef's version.
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)


def _render(catalogue_dir: Path = PROGDEFS, **settings: Any) -> list[dict[str, Any]]:
    # Most tests look at other things than digests: tags are allowed unless a test says not.
    settings.setdefault("allow_tags", True)
    return render_catalogue(load_catalogue(catalogue_dir), DeploySettings(**settings))


def _of(objects: list[dict[str, Any]], kind: str, progdef: str) -> dict[str, Any]:
    (found,) = [
        obj
        for obj in objects
        if obj["kind"] == kind and obj["metadata"]["labels"].get("dagyo.io/progdef") == progdef
    ]
    return found


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def test_every_rendered_object_of_the_catalogue_validates_strictly() -> None:
    objects = _render()
    used = [validate_any(obj) for obj in objects]
    for obj in objects:
        check_names_and_labels(obj)
    per_progdef = len(SAMPLE_PROGDEFS)
    # A Deployment and a PodDisruptionBudget per progdef, the ConfigMap, the scheduler...
    assert used.count("kubernetes") == 2 * per_progdef + 2
    # ...and a ScaledObject per progdef, and the TriggerAuthentication KEDA trusts TLS by.
    assert used.count("keda") == per_progdef + 1


@pytest.mark.parametrize("autoscaler", ["keda", "none"])
@pytest.mark.parametrize("state_volume", ["pvc", "emptydir"])
@pytest.mark.parametrize("scaler", ["external", "rabbitmq"])
@pytest.mark.parametrize("tls_secret", ["dagyo-scheduler-tls", ""])
def test_every_variant_validates_strictly(
    autoscaler: str, state_volume: str, scaler: str, tls_secret: str
) -> None:
    for obj in _render(
        autoscaler=autoscaler,
        state_volume=state_volume,
        scaler=scaler,
        registry="registry.invalid/x",
        tls_secret=tls_secret,
        tokens_secret=tls_secret and "dagyo-tokens",
    ):
        validate_any(obj)


def test_the_rabbitmq_scaler_and_a_scaler_address_can_be_chosen() -> None:
    progdef = load_catalogue(PROGDEFS)["greet"]
    (trigger,) = _of(_render(scaler="rabbitmq"), "ScaledObject", "greet")["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == progdef.mailbox
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["metadata"]["hostFromEnv"] == "DAGYO_QUEUE"
    objects = _render(scaler_address="scheduler.example:443", namespace="jobs")
    (trigger,) = _of(objects, "ScaledObject", "greet")["spec"]["triggers"]
    assert trigger["metadata"]["scalerAddress"] == "scheduler.example:443"
    (trigger,) = _of(_render(namespace="jobs"), "ScaledObject", "greet")["spec"]["triggers"]
    assert trigger["metadata"]["scalerAddress"] == "dagyo-scheduler.jobs.svc:50051"
    with pytest.raises(ManifestError, match="scaler 'kafka': use one of"):
        DeploySettings(scaler="kafka")


def test_the_validators_are_strict() -> None:
    deployment = _of(_render(), "Deployment", "greet")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(deployment)
    scaled = _of(_render(), "ScaledObject", "greet")
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        validate_scaled_object(scaled)
    scaled = _of(_render(), "ScaledObject", "greet")
    scaled["metadata"]["label"] = {"dagyo.io/progdef": "greet"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_scaled_object(scaled)
    with pytest.raises(AssertionError, match="label value"):
        check_names_and_labels({"metadata": {"name": "x", "labels": {"a": "not a value"}}})


@pytest.mark.parametrize("name", SAMPLE_PROGDEFS)
def test_each_progdef_has_a_draining_probed_deployment_on_its_mailbox(name: str) -> None:
    catalogue = load_catalogue(PROGDEFS)
    progdef = catalogue[name]
    objects = _render()
    deployments = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and obj["metadata"]["labels"].get("dagyo.io/progdef") == name
    ]
    assert len(deployments) == 1
    (deployment,) = deployments
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    env = _env(container)
    # The scheduler and the executor derive the mailbox with the same function.
    assert env["DAGYO_JOBS"] == progdef.mailbox
    assert env["DAGYO_JOBS"] == f"dagyo.mailbox.{name}.{progdef.version}"
    assert env["DAGYO_QUEUE"] == {"secretKeyRef": {"name": "dagyo-queue", "key": "url"}}
    assert env["DAGYO_METRICS_PORT"] == "9100"
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert pod["terminationGracePeriodSeconds"] > progdef.drain_grace_s
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {
        "cpu": progdef.resources.cpu,
        "memory": progdef.resources.memory,
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "dagyo-executor"
    assert labels["dagyo.io/progdef"] == name
    assert labels["dagyo.io/version"] == progdef.version
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["image"] == image_reference("", f"dagyo-{name}", progdef.version)
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    (trigger,) = _of(objects, "ScaledObject", name)["spec"]["triggers"]
    # The scheduler's external scaler, pushing activity: jobs waiting plus running.
    assert trigger["type"] == "external-push"
    assert trigger["metadata"] == {
        "scalerAddress": "dagyo-scheduler.dagyo.svc:50051",
        "progdef": name,
        "version": progdef.version,
    }
    scaled = _of(objects, "ScaledObject", name)["spec"]
    assert scaled["minReplicaCount"] == progdef.scaling.min_executors
    assert scaled["maxReplicaCount"] == progdef.scaling.max_executors
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    budget = _of(objects, "PodDisruptionBudget", name)
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def _edit(catalogue: Path, name: str, **changes: Any) -> None:
    path = catalogue / name / "progdef.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2))


def test_gpus_secrets_env_and_grace_come_from_progdef_json(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet", "void_sink"))
    _edit(
        catalogue,
        "greet",
        resources={"cpu": "2", "memory": "4Gi", "gpu": 2},
        env={"MODEL": "small"},
        secrets=["API_TOKEN"],
        drain_grace_s=300,
    )
    objects = _render(catalogue)
    for obj in objects:
        validate_any(obj)
    deployment = _of(objects, "Deployment", "greet")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    env = _env(container)
    assert env["MODEL"] == "small"
    assert env["API_TOKEN"] == {"secretKeyRef": {"name": "dagyo-progdef-greet", "key": "API_TOKEN"}}
    assert pod["terminationGracePeriodSeconds"] >= 300
    plain = _of(objects, "Deployment", "void_sink")["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain
    assert (
        "nvidia.com/gpu"
        not in _container(_of(objects, "Deployment", "void_sink"))["resources"]["limits"]
    )


def test_recorded_digests_pin_images_and_the_rest_go_by_tag() -> None:
    catalogue = load_catalogue(PROGDEFS)
    tag = image_reference("registry.invalid", "dagyo-greet", catalogue["greet"].version)
    pinned = "registry.invalid/dagyo-greet@sha256:" + "a" * 64
    objects = _render(registry="registry.invalid", images={tag: pinned})
    assert _container(_of(objects, "Deployment", "greet"))["image"] == pinned
    other = _container(_of(objects, "Deployment", "count"))["image"]
    assert other == image_reference("registry.invalid", "dagyo-count", catalogue["count"].version)


def _images(objects: list[dict[str, Any]]) -> list[str]:
    return [
        container["image"]
        for obj in objects
        if obj["kind"] == "Deployment"
        for container in obj["spec"]["template"]["spec"]["containers"]
    ]


def test_an_image_without_a_digest_is_refused_unless_tags_are_allowed() -> None:
    catalogue = load_catalogue(PROGDEFS)
    registry = "registry.invalid/team"
    tags = {
        name: image_reference(registry, f"dagyo-{name}", progdef.version)
        for name, progdef in catalogue.items()
    }
    lock = {tag: tag.rpartition(":")[0] + "@sha256:" + "a" * 64 for tag in tags.values()}
    scheduler = "registry.invalid/team/dagyo-scheduler@sha256:" + "b" * 64
    objects = _render(registry=registry, images=lock, scheduler_image=scheduler, allow_tags=False)
    images = _images(objects)
    assert len(images) == len(SAMPLE_PROGDEFS) + 1
    assert all(re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", image) for image in images), images

    # One progdef missing from the lock: refused, and named with its tag.
    without_greet = {tag: pin for tag, pin in lock.items() if tag != tags["greet"]}
    with pytest.raises(ImagesNotPinned) as caught:
        _render(
            registry=registry, images=without_greet, scheduler_image=scheduler, allow_tags=False
        )
    message = str(caught.value)
    assert f"{tags['greet']} (progdef greet)" in message
    assert "(progdef count)" not in message and "(the scheduler)" not in message
    assert "dagyo build --push" in message and "--allow-tags" in message
    assert "\n" not in message

    # The scheduler's image by tag, and something that only looks like a digest.
    with pytest.raises(ImagesNotPinned, match=r"registry.invalid/s:1 \(the scheduler\)"):
        _render(
            registry=registry, images=lock, scheduler_image="registry.invalid/s:1", allow_tags=False
        )
    with pytest.raises(ImagesNotPinned, match="the scheduler"):
        _render(registry=registry, images=lock, scheduler_image="s@sha256:abc", allow_tags=False)

    # Nothing pinned at all: the first few are named, the rest counted.
    with pytest.raises(ImagesNotPinned, match=r"and \d+ more"):
        _render(allow_tags=False)
    assert DeploySettings().allow_tags is False, "refused by default"
    # Allowed: deployed by tag.
    assert _images(_render(registry=registry))[0].startswith(f"{registry}/dagyo-")


def test_without_an_autoscaler_replicas_are_fixed_and_the_catalogue_says_so() -> None:
    objects = _render(autoscaler="none")
    assert not [obj for obj in objects if obj["kind"] == "ScaledObject"]
    deployment = _of(objects, "Deployment", "greet")
    assert deployment["spec"]["replicas"] == 1
    (config_map,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    assert not [key for key in config_map["data"] if key.endswith(".AUTOSCALER")]


def test_the_scheduler_mounts_the_catalogue_as_one_folder_per_progdef() -> None:
    catalogue = load_catalogue(PROGDEFS)
    objects = _render()
    (config_map,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    data = config_map["data"]
    for name, progdef in catalogue.items():
        assert json.loads(data[f"{name}.progdef.json"]) == json.loads(
            (PROGDEFS / name / "progdef.json").read_text()
        )
        assert data[f"{name}.VERSION"] == progdef.version
        assert data[f"{name}.AUTOSCALER"] == "keda"
    scheduler = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment"
        and obj["metadata"]["labels"]["app.kubernetes.io/name"] == "dagyo-scheduler"
    ]
    assert objects[-1] is scheduler[0], "the scheduler is applied last"
    pod = scheduler[0]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "catalogue"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    paths = {item["key"]: item["path"] for item in volume["configMap"]["items"]}
    assert set(paths) == set(data) | set(config_map.get("binaryData", {}))
    # a progdef with protos brings them compiled, so the scheduler needs no compiler
    assert "distance.types.binpb" in config_map["binaryData"]
    for name in catalogue:
        assert paths[f"{name}.progdef.json"] == f"{name}/progdef.json"
        assert paths[f"{name}.VERSION"] == f"{name}/VERSION"
        assert paths[f"{name}.AUTOSCALER"] == f"{name}/AUTOSCALER"
    (container,) = pod["containers"]
    assert _env(container)["DAGYO_PROGDEFS"] == CATALOGUE_MOUNT


def test_a_catalogue_change_restarts_the_scheduler(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))

    def annotation() -> str:
        (scheduler,) = [o for o in _render(catalogue) if o["metadata"]["name"] == "dagyo-scheduler"]
        return str(scheduler["spec"]["template"]["metadata"]["annotations"]["dagyo.io/catalogue"])

    before = annotation()
    assert annotation() == before
    (catalogue / "greet" / "main.py").write_text("# changed\n")
    assert annotation() != before


def test_names_kubernetes_cannot_take_are_refused(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    (catalogue / "greet-2").mkdir()
    data = json.loads((catalogue / "greet" / "progdef.json").read_text())
    (catalogue / "greet-2" / "progdef.json").write_text(json.dumps({**data, "name": "a-b"}))
    (catalogue / "greet-3").mkdir()
    (catalogue / "greet-3" / "progdef.json").write_text(json.dumps({**data, "name": "a_b"}))
    with pytest.raises(
        ManifestError, match="a-b and a_b would share the Kubernetes name dagyo-a-b"
    ):
        _render(catalogue)


def test_a_progdef_cannot_set_dagyos_own_variables(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    _edit(catalogue, "greet", env={"DAGYO_JOBS": "elsewhere"})
    with pytest.raises(ManifestError, match="progdef greet: DAGYO_JOBS is reserved"):
        _render(catalogue)


def test_dry_run_yaml_round_trips_with_strings_kept_strings(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    # A version a YAML 1.2 reader would otherwise take for a float.
    (catalogue / "greet" / "VERSION").write_text("1234e567\n")
    objects = _render(catalogue)
    text = to_yaml(objects)
    assert '"1234e567"' in text
    assert "&id" not in text and "*id" not in text, "no YAML anchors"
    assert list(yaml.safe_load_all(text)) == objects
    for obj in yaml.safe_load_all(text):
        validate_any(obj)


def test_the_shipped_keda_crd_is_a_valid_custom_resource_definition() -> None:
    crd = yaml.safe_load((CRDS / "keda-scaledobject.yaml").read_text())
    validate_kubernetes(crd)
    assert crd["spec"]["group"] == "keda.sh" and crd["spec"]["names"]["kind"] == "ScaledObject"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["scaleTargetRef", "triggers"]
