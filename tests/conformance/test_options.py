"""The suite's options: which executor it starts, and which progdefs that one runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conformance.executors import infer_runtime
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("command", "runtime"),
    [
        ("python -m executor {progdef}", "python"),
        ("/usr/bin/python3 -m executor {progdef}", "python"),
        ("node sdks/js/bin/dagyo-executor.js {progdef}", "node"),
        ("/usr/local/bin/node --enable-source-maps main.mjs {progdef}", "node"),
        ("sdks/js/bin/dagyo-executor.js {progdef}", "node"),
    ],
)
def test_the_runtime_is_inferred_from_the_command(command: str, runtime: str) -> None:
    assert infer_runtime(command.split()) == runtime


def test_a_command_without_progdef_is_refused_saying_where_it_goes() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q"]
        + ["--executor-command", "python -m executor", "tests/conformance/test_drain.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "has no {progdef}: put it where the progdef folder goes" in run.stdout, run.stdout
