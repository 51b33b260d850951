"""The core install leaves the deploy tooling out: `dagyo build`/`deploy` say how to add it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Installed as sitecustomize: every import of kubernetes fails, as on a core install.
BLOCKER = """
import sys

class _NoKubernetes:
    def find_spec(self, name, path=None, target=None):
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoKubernetes())
"""


def dagyo_without_kubernetes(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "", "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )


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
