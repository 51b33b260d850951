"""The core install leaves the deploy tooling out: `dagyo build`/`deploy` say how to add it."""

from __future__ import annotations

from pathlib import Path

from tests.commands import dagyo_without_kubernetes


def test_deploy_without_the_deploy_extra_prints_the_hint_and_exits_2(tmp_path: Path) -> None:
    result = dagyo_without_kubernetes(tmp_path, "deploy", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        "dagyo: deploy needs the deploy extra (kubernetes is not installed): "
        "pip install 'dagyo[deploy]'\n"
    )


def test_build_without_the_deploy_extra_prints_the_hint_and_exits_2(tmp_path: Path) -> None:
    result = dagyo_without_kubernetes(tmp_path, "build", "--print", "greet")
    assert result.returncode == 2, result.stderr
    assert "pip install 'dagyo[deploy]'" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_run_and_help_work_without_the_deploy_extra(tmp_path: Path) -> None:
    result = dagyo_without_kubernetes(tmp_path, "run", "examples/hello.json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    listing = dagyo_without_kubernetes(tmp_path, "--help")
    assert listing.returncode == 0, listing.stderr
    assert "deploy" in listing.stdout
