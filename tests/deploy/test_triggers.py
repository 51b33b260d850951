"""`dagyo deploy --triggers`: the scheduler's trigger folder as a ConfigMap, and its HTTP
endpoint as a Service, validated like every other object."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from executor.core.progdef import load_catalogue
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.errors import ManifestError
from scheduler.service.triggers import load_triggers
from tests.deploy import PROGDEFS, ROOT, check_names_and_labels, validate_any

EXAMPLES = ROOT / "examples" / "triggers"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))
    monkeypatch.delenv("DAGYO_TRIGGERS", raising=False)
    monkeypatch.delenv("DAGYO_TRIGGERS_HTTP", raising=False)


@pytest.fixture
def triggers(tmp_path: Path) -> Path:
    folder = tmp_path / "triggers"
    shutil.copytree(EXAMPLES, folder)
    return folder


def _render(**settings: Any) -> list[dict[str, Any]]:
    settings.setdefault("allow_tags", True)
    # The examples name no tenant: the scheduler runs open.
    settings.setdefault("tokens_secret", "")
    return render_catalogue(load_catalogue(PROGDEFS), DeploySettings(**settings))


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _scheduler(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = _named(objects, "Deployment", "dagyo-scheduler")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def test_the_triggers_folder_is_a_config_map_mounted_as_the_schedulers(
    triggers: Path, tmp_path: Path
) -> None:
    objects = _render(triggers_dir=triggers)
    for obj in objects:
        validate_any(obj)
        check_names_and_labels(obj)
    config_map = _named(objects, "ConfigMap", "dagyo-triggers")
    assert objects.index(config_map) == 1, "applied before the scheduler, after the catalogue"
    assert sorted(config_map["data"]) == ["batched.yaml", "greet-key.json", "on-upload.json"]
    assert config_map["data"]["on-upload.json"] == (triggers / "on-upload.json").read_text()
    pod, container = _scheduler(objects)
    assert _env(container)["DAGYO_TRIGGERS"] == "/etc/dagyo/triggers"
    assert "DAGYO_TRIGGERS_HTTP" not in _env(container)
    assert {"name": "triggers", "mountPath": "/etc/dagyo/triggers", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "triggers", "configMap": {"name": "dagyo-triggers"}} in pod["spec"]["volumes"]
    assert not [o for o in objects if o["kind"] == "Service"], "no HTTP endpoint asked for"
    # What the scheduler reads from the mount is what the folder holds.
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for key, text in config_map["data"].items():
        (mounted / key).write_text(text)
    assert sorted(t.name for t in load_triggers(mounted, tenant_required=False)[0]) == sorted(
        t.name for t in load_triggers(triggers, tenant_required=False)[0]
    )
    # A changed trigger restarts the scheduler, which reads the folder at start.
    before = pod["metadata"]["annotations"]["dagyo.io/triggers"]
    path = triggers / "on-upload.json"
    path.write_text(path.read_text().replace('"max_events": 1', '"max_events": 2'))
    after = _scheduler(_render(triggers_dir=triggers))[0]["metadata"]["annotations"]
    assert after["dagyo.io/triggers"] != before
    assert "dagyo.io/triggers" not in _scheduler(_render())[0]["metadata"]["annotations"]


def test_the_http_endpoint_is_a_port_of_the_scheduler_and_a_service(triggers: Path) -> None:
    objects = _render(triggers_dir=triggers, triggers_port=8090)
    for obj in objects:
        validate_any(obj)
        check_names_and_labels(obj)
    pod, container = _scheduler(objects)
    assert _env(container)["DAGYO_TRIGGERS_HTTP"] == "0.0.0.0:8090"
    assert {"name": "triggers", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    service = _named(objects, "Service", "dagyo-triggers")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8090, "targetPort": "triggers", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert objects.index(service) < objects.index(_named(objects, "Deployment", "dagyo-scheduler"))


def test_triggers_kubernetes_or_the_scheduler_cannot_take_are_refused(
    triggers: Path, tmp_path: Path
) -> None:
    with pytest.raises(ManifestError, match="--triggers-http needs --triggers"):
        _render(triggers_port=8090)
    with pytest.raises(ManifestError, match="--triggers-http 70000: a port from 1 to 65535"):
        _render(triggers_dir=triggers, triggers_port=70000)
    with pytest.raises(ManifestError, match="triggers folder .*nowhere.* cannot be read"):
        _render(triggers_dir=tmp_path / "nowhere")
    # With tokens on, each trigger names its tenant: the examples do not.
    with pytest.raises(ManifestError, match="on-upload.json: .*tenant") as caught:
        _render(triggers_dir=triggers, tokens_secret="dagyo-tokens")
    assert "fix them, or deploy without --triggers" in str(caught.value)
    # A flow file outside the folder would not be in the ConfigMap.
    outside = tmp_path / "flows"
    outside.mkdir()
    shutil.move(triggers / "greet-key.json", outside / "greet-key.json")
    for name in ("on-upload.json", "batched.yaml"):
        path = triggers / name
        path.write_text(path.read_text().replace("greet-key.json", "../flows/greet-key.json"))
    with pytest.raises(ManifestError, match=r"trigger on-upload: its flow .*greet-key.json is "):
        _render(triggers_dir=triggers)
    # A missing flow file is the trigger's own problem, reported as the scheduler would.
    (outside / "greet-key.json").unlink()
    with pytest.raises(ManifestError, match="cannot read the flow file"):
        _render(triggers_dir=triggers)


def test_a_file_name_a_config_map_cannot_hold_is_refused(triggers: Path) -> None:
    (triggers / "on upload.json").write_text(
        json.dumps({"name": "spaced", "flow": "greet-key.json", "match": {"type": "t"}})
    )
    with pytest.raises(ManifestError, match="'on upload.json'.* rename it"):
        _render(triggers_dir=triggers)


def test_deploy_takes_the_triggers_folder_and_http_port(triggers: Path) -> None:
    arguments = ["--dry-run", "--allow-tags", "--tokens-secret", "none"]
    result = CliRunner().invoke(
        deploy, [*arguments, "--triggers", str(triggers), "--triggers-http", "127.0.0.1:8090"]
    )
    assert result.exit_code == 0, result.output
    assert "kind: Service" in result.output and "DAGYO_TRIGGERS_HTTP" in result.output
    assert "0.0.0.0:8090" in result.output, "the scheduler listens on the pod's addresses"
    result = CliRunner().invoke(
        deploy,
        [*arguments],
        env={"DAGYO_TRIGGERS": str(triggers), "DAGYO_TRIGGERS_HTTP": "8090"},
    )
    assert result.exit_code == 0, result.output
    assert "name: dagyo-triggers" in result.output
    result = CliRunner().invoke(
        deploy, [*arguments, "--triggers", str(triggers), "--triggers-http", "http"]
    )
    assert result.exit_code == 2
    assert "--triggers-http 'http': a port, or host:port" in result.output
