"""A flow's deadline is a finite number of seconds: NaN and infinity are refused, not run
with no deadline. The fixtures are in conftest.py."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.scheduler.fake_executor import Client

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("deadline_s", [math.nan, math.inf, -math.inf, -1.0])
def test_submit_refuses_a_deadline_that_is_not_a_finite_number(
    client: Client, deadline_s: float
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(deadline_s=deadline_s)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "deadline_s must be a finite number of seconds" in str(caught.value.details())


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-3"])
def test_the_cli_refuses_a_deadline_that_is_not_a_finite_number(text: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler.cli",
            "flow",
            "submit",
            "--deadline",
            text,
            "--scheduler",
            "127.0.0.1:1",
            "examples/hello.json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert done.returncode == 2, done.stderr
    assert "--deadline" in done.stderr
    assert "cannot reach the scheduler" not in done.stderr


def test_the_help_states_the_deadline_precision() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "flow", "submit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert "within a second" in " ".join(done.stdout.split())
