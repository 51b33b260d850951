"""The scheduler's credentials in what `dagyo deploy` renders: each from a Secret, and only
the scheduler (and KEDA, for the CA) gets them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from executor.core.errors import Unauthenticated
from executor.core.progdef import load_catalogue
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.errors import ManifestError
from scheduler.service.auth import (
    Authenticator,
    Principal,
    Quotas,
    TokenFile,
    token_digest,
    tokens_json,
)
from tests.deploy import PROGDEFS, validate_any, validate_trigger_authentication

SCHEDULER_ONLY = ("DAGYO_TLS_CERT", "DAGYO_TLS_KEY", "DAGYO_TLS_CLIENT_CA", "DAGYO_TOKENS")


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))


def _render(**settings: Any) -> list[dict[str, Any]]:
    settings.setdefault("allow_tags", True)
    return render_catalogue(load_catalogue(PROGDEFS), DeploySettings(**settings))


def _scheduler(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "dagyo-scheduler"
    ]
    return dict(deployment["spec"]["template"]["spec"])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def _file_of(pod: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key a file path of the scheduler's container is mounted from."""
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        folder = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).parent == folder:
            assert mount.get("readOnly") is True, mount
            # No subPath: the kubelet updates a Secret volume in place only without one,
            # which is how a token file edited in its Secret revokes tokens.
            assert "subPath" not in mount, mount
            secret = volumes[mount["name"]]["secret"]
            name = PurePosixPath(path).name
            keys = [item["key"] for item in secret["items"] if item["path"] == name]
            assert keys == [name], secret
            return secret["secretName"], keys[0]
    raise AssertionError(f"{path} is on no volume of the scheduler")


def test_the_scheduler_reads_its_certificate_tokens_and_broker_url_from_secrets() -> None:
    objects = _render()
    for obj in objects:
        validate_any(obj)
    pod = _scheduler(objects)
    (container,) = pod["containers"]
    env = _env(container)
    assert env["DAGYO_QUEUE"] == {"secretKeyRef": {"name": "dagyo-queue", "key": "url"}}
    assert _file_of(pod, env["DAGYO_TLS_CERT"]) == ("dagyo-scheduler-tls", "tls.crt")
    assert _file_of(pod, env["DAGYO_TLS_KEY"]) == ("dagyo-scheduler-tls", "tls.key")
    # A `dagyo` command run in the scheduler's pod trusts the same CA.
    assert _file_of(pod, env["DAGYO_TLS_CA"]) == ("dagyo-scheduler-tls", "ca.crt")
    assert _file_of(pod, env["DAGYO_TOKENS"]) == ("dagyo-tokens", "tokens.yaml")
    # Readable by the scheduler's group (the pod's fsGroup) only.
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440
    # The kubelet's gRPC probe cannot speak TLS: readiness asks the health endpoint.
    assert "grpc" not in container["readinessProbe"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_keda_trusts_the_scheduler_by_the_ca_in_its_tls_secret() -> None:
    objects = _render()
    (authentication,) = [obj for obj in objects if obj["kind"] == "TriggerAuthentication"]
    validate_trigger_authentication(authentication)
    assert authentication["spec"] == {
        "secretTargetRef": [{"parameter": "caCert", "name": "dagyo-scheduler-tls", "key": "ca.crt"}]
    }
    scaled = [obj for obj in objects if obj["kind"] == "ScaledObject"]
    assert scaled
    for obj in scaled:
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["authenticationRef"] == {"name": authentication["metadata"]["name"]}
    # It exists before the ScaledObjects that name it.
    assert objects.index(authentication) < objects.index(scaled[0])
    # KEDA's RabbitMQ scaler asks the broker, not the scheduler: nothing to trust.
    objects = _render(scaler="rabbitmq")
    assert not [obj for obj in objects if obj["kind"] == "TriggerAuthentication"]
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            assert "authenticationRef" not in obj["spec"]["triggers"][0]


def test_the_validator_refuses_what_the_crd_does_not_name() -> None:
    (authentication,) = [obj for obj in _render() if obj["kind"] == "TriggerAuthentication"]
    authentication["spec"]["secretTargetRef"][0]["secret"] = "x"
    with pytest.raises(jsonschema.ValidationError, match="secret"):
        validate_trigger_authentication(authentication)


def test_executors_get_no_scheduler_credential() -> None:
    for obj in _render():
        if obj["kind"] != "Deployment" or obj["metadata"]["name"] == "dagyo-scheduler":
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert not set(_env(container)) & set(SCHEDULER_ONLY), obj["metadata"]["name"]
        secrets = [
            volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume
        ]
        assert "dagyo-scheduler-tls" not in secrets and "dagyo-tokens" not in secrets


def test_tls_and_tokens_can_each_be_named_or_turned_off() -> None:
    pod = _scheduler(_render(tls_secret="team-tls", tokens_secret="team-tokens"))
    env = _env(pod["containers"][0])
    assert _file_of(pod, env["DAGYO_TLS_CERT"]) == ("team-tls", "tls.crt")
    assert _file_of(pod, env["DAGYO_TOKENS"]) == ("team-tokens", "tokens.yaml")

    objects = _render(tls_secret="", tokens_secret="")
    for obj in objects:
        validate_any(obj)
    pod = _scheduler(objects)
    (container,) = pod["containers"]
    assert not set(_env(container)) & set(SCHEDULER_ONLY)
    assert not [volume for volume in pod["volumes"] if "secret" in volume]
    assert container["readinessProbe"]["grpc"] == {"port": 50051}
    assert not [obj for obj in objects if obj["kind"] == "TriggerAuthentication"]
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            assert "authenticationRef" not in obj["spec"]["triggers"][0]

    with pytest.raises(ManifestError, match="tls_secret 'Team TLS': not a Secret name"):
        DeploySettings(tls_secret="Team TLS")


def test_deploy_options_name_the_secrets_and_none_turns_each_off() -> None:
    base = ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS)]
    result = CliRunner().invoke(deploy, [*base, "--tls-secret", "t", "--tokens-secret", "k"])
    assert result.exit_code == 0, result.output
    pod = _scheduler(list(yaml.safe_load_all(result.output)))
    env = _env(pod["containers"][0])
    assert _file_of(pod, env["DAGYO_TLS_KEY"]) == ("t", "tls.key")
    assert _file_of(pod, env["DAGYO_TOKENS"]) == ("k", "tokens.yaml")
    result = CliRunner().invoke(deploy, [*base, "--tls-secret", "none", "--tokens-secret", "none"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.output))
    assert not set(_env(_scheduler(objects)["containers"][0])) & set(SCHEDULER_ONLY)
    help_text = CliRunner().invoke(deploy, ["--help"]).output
    assert "--tls-secret" in help_text and "--tokens-secret" in help_text


def _kubelet_writes(folder: Path, name: str, text: str, generation: int) -> None:
    """Update a Secret volume as the kubelet does: a new timestamped folder, then one atomic
    rename of the ``..data`` link to it (the file itself is a link through ``..data``)."""
    fresh = folder / f"..2026_12_02_00_00_0{generation}.000000000"
    fresh.mkdir()
    (fresh / name).write_text(text)
    (folder / "..data_tmp").symlink_to(fresh.name)
    os.replace(folder / "..data_tmp", folder / "..data")
    if not (folder / name).is_symlink():
        (folder / name).symlink_to(f"..data/{name}")
    for old in folder.glob("..2026_*"):
        if old != fresh:
            shutil.rmtree(old)


def test_a_token_deleted_from_the_mounted_secret_is_refused_without_a_restart(
    tmp_path: Path,
) -> None:
    principals = {
        token_digest("token-a"): Principal(tenant="team-a", role="user", quotas=Quotas()),
        token_digest("token-b"): Principal(tenant="team-b", role="user", quotas=Quotas()),
    }
    _kubelet_writes(tmp_path, "tokens.yaml", tokens_json(principals), 1)
    authenticator = Authenticator(TokenFile(tmp_path / "tokens.yaml"))
    bearer = [("authorization", "Bearer token-b")]
    assert authenticator.authenticate(bearer).tenant == "team-b"
    del principals[token_digest("token-b")]
    _kubelet_writes(tmp_path, "tokens.yaml", tokens_json(principals), 2)
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        authenticator.authenticate(bearer)
    assert authenticator.authenticate([("authorization", "Bearer token-a")]).tenant == "team-a"
