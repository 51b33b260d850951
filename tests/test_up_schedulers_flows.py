"""`dagyo up --schedulers 2` on PostgreSQL: a hello flow submitted to each scheduler succeeds,
and each sees both flows."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.commands import exported_texts, run_dagyo
from tests.conftest import EXAMPLES
from tests.several_schedulers import two_schedulers

pytestmark = pytest.mark.slow

HELLO = [f"hello name-{i}" for i in range(3)]


def test_a_hello_flow_submitted_to_each_of_two_schedulers_succeeds(
    amqp_url: str, tmp_path: Path
) -> None:
    progdefs = ("source", "greet", "void_sink")
    with two_schedulers(amqp_url, tmp_path, progdefs) as (up, addresses, env, _, log):
        for address in addresses:
            assert exported_texts(EXAMPLES / "hello.json", {**env, "DAGYO_SCHEDULER": address}) == (
                HELLO
            )
        for address in addresses:  # one state: each sees both flows
            listed = run_dagyo("flow", "list", "--json", env={**env, "DAGYO_SCHEDULER": address})
            assert len(listed.stdout.splitlines()) == 2, listed.stdout
        up.send_signal(signal.SIGINT)
        assert up.wait(120) == 0, log.read_text()
