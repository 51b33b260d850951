"""The `dagyo deploy --dry-run` and `dagyo build --print` commands as an operator runs them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from executor.core.progdef import load_catalogue
from scheduler.cli.deploy import build, deploy
from scheduler.service.config import default_progdefs_dir
from tests.deploy import PROGDEFS, ROOT, SAMPLE_PROGDEFS, copy_catalogue, validate_any


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    # A lock left by a real `dagyo build --push` would pin images: use none.
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))


def test_deploy_refuses_images_without_a_digest_unless_tags_are_allowed() -> None:
    for args in (["--dry-run"], []):
        result = CliRunner().invoke(deploy, [*args, "--progdefs", str(PROGDEFS)])
        assert result.exit_code == 2, result.output
        (line,) = result.output.splitlines()
        unpinned = len(SAMPLE_PROGDEFS) + 1  # and the scheduler
        assert line.startswith(f"dagyo: {unpinned} image(s) would run by tag, without a digest: ")
        assert "dagyo build --push" in line and "--allow-tags" in line
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 0, result.output
    assert "--allow-tags" in CliRunner().invoke(deploy, ["--help"]).output


def test_deploy_dry_run_prints_valid_objects_for_the_whole_catalogue() -> None:
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    for document in documents:
        validate_any(document)
    catalogue = load_catalogue(PROGDEFS)
    executors = Counter()
    scalers = Counter()
    for document in documents:
        progdef = document["metadata"]["labels"].get("dagyo.io/progdef")
        if document["kind"] == "Deployment" and progdef:
            executors[progdef] += 1
            pod = document["spec"]["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] >= 60
            (container,) = pod["containers"]
            assert container["readinessProbe"] and container["livenessProbe"]
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["requests"]["memory"]
        if document["kind"] == "ScaledObject":
            (trigger,) = document["spec"]["triggers"]
            assert trigger["type"] == "external-push"
            assert trigger["metadata"]["version"] == catalogue[progdef].version
            scalers[progdef] += 1
    assert executors == dict.fromkeys(SAMPLE_PROGDEFS, 1)
    assert scalers == dict.fromkeys(SAMPLE_PROGDEFS, 1)


def test_build_print_tags_follow_the_content_hash(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))

    def tag() -> str:
        result = CliRunner().invoke(build, ["--print", "--progdefs", str(catalogue), "greet"])
        assert result.exit_code == 0, result.output
        (line,) = [line for line in result.output.splitlines() if "dagyo-greet:" in line]
        return line.split()[0]

    first = tag()
    assert first == f"dagyo-greet:{load_catalogue(catalogue)['greet'].version}"
    assert tag() == first
    (catalogue / "greet" / "main.py").write_text("# a new handler\n")
    assert tag() != first


def test_a_baked_version_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGYO_PROGDEF_VERSION", "0123456789abcdef")
    for command, args in [(build, ["--print"]), (deploy, ["--dry-run", "--allow-tags"])]:
        result = CliRunner().invoke(command, [*args, "--progdefs", str(PROGDEFS)])
        assert result.exit_code == 2
        assert "DAGYO_PROGDEF_VERSION is set" in result.output


def test_a_malformed_progdef_is_reported_with_exit_2(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    (catalogue / "greet" / "progdef.json").write_text("{")
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--progdefs", str(catalogue)])
    assert result.exit_code == 2
    assert "malformed JSON" in result.output and "Traceback" not in result.output


def test_the_progdefs_folder_defaults_to_the_working_directory_then_the_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGYO_PROGDEFS", raising=False)
    monkeypatch.chdir(ROOT)
    assert default_progdefs_dir().resolve() == PROGDEFS
    monkeypatch.chdir(tmp_path)
    assert default_progdefs_dir().resolve() == PROGDEFS, "the installed sample catalogue"
    copy_catalogue(tmp_path, ("greet",))
    assert default_progdefs_dir().resolve() == (tmp_path / "progdefs").resolve()
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags"])
    assert result.exit_code == 0, result.output
    names = {
        d["metadata"]["labels"].get("dagyo.io/progdef") for d in yaml.safe_load_all(result.output)
    }
    assert names == {None, "greet"}
    monkeypatch.setenv("DAGYO_PROGDEFS", str(PROGDEFS))
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags"])
    names = {
        d["metadata"]["labels"].get("dagyo.io/progdef") for d in yaml.safe_load_all(result.output)
    }
    assert names == {None, *SAMPLE_PROGDEFS}


def test_deploy_scaler_rabbitmq_keeps_the_mailbox_trigger() -> None:
    result = CliRunner().invoke(
        deploy, ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS), "--scaler", "rabbitmq"]
    )
    assert result.exit_code == 0, result.output
    catalogue = load_catalogue(PROGDEFS)
    scaled = [d for d in yaml.safe_load_all(result.output) if d["kind"] == "ScaledObject"]
    assert scaled
    for document in scaled:
        validate_any(document)
        (trigger,) = document["spec"]["triggers"]
        progdef = document["metadata"]["labels"]["dagyo.io/progdef"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == catalogue[progdef].mailbox
