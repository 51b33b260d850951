"""The repository's own checks: generated code is fresh, lint and types are clean."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_generated_protobuf_code_is_fresh() -> None:
    result = run(sys.executable, "proto/generate.py", "--check")
    assert result.returncode == 0, result.stderr


def test_ruff_finds_nothing() -> None:
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_scheduler_and_executor() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_sample_progdef_loads_and_has_code() -> None:
    from executor.progdef import load_catalogue
    from executor.program import load_program

    catalogue = load_catalogue(ROOT / "progdefs")
    assert set(catalogue) == {
        "source",
        "greet",
        "void_sink",
        "count",
        "unordered_cartesian_product",
        "explode",
        "slow",
        "parse_int",
        "assert",
        "ignore_errors",
        "log_errors",
        "distance",
    }
    for progdef in catalogue.values():
        assert callable(load_program(progdef).run)
