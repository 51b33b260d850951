"""`dagyo up` with an executor that fails at start-up keeps the rest of the cluster running and
leaves no mailbox of it behind; `dagyo up --clean` leaves nothing in the vhost at a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pika

from executor.core.progdef import load_catalogue
from tests.cluster import broker_leftovers, copy_catalogue, own_vhost
from tests.commands import free_address, lines_until
from tests.conftest import EXAMPLES, ROOT
from tests.embedded import TEXT, make_progdef

SULKY = """
def init(ctx):
    raise RuntimeError("the model is not there")

def handler(ctx, item):
    return item
"""


def start_up(
    catalogue: Path, url: str, tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    address = free_address("127.0.0.1")
    env = {
        **os.environ,
        "DAGYO_QUEUE": url,
        "DAGYO_STATE": str(tmp_path / "state.sqlite3"),
        "DAGYO_SCHEDULER": address,
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DAGYO_PROGDEFS", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "up", "--progdefs", str(catalogue)]
        + ["--listen", address, "--no-ui", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return up, env


def hello(env: dict[str, str]) -> list[str]:
    submitted = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "flow", "submit", str(EXAMPLES / "hello.json")]
        + ["--wait"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    return [json.loads(line)["value"]["text"] for line in submitted.stdout.splitlines()]


def stop(up: subprocess.Popen[str]) -> tuple[int, str]:
    up.send_signal(signal.SIGINT)
    try:
        _, stderr = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    return up.returncode, stderr


def test_an_executor_failing_at_start_up_is_retried_and_the_rest_of_the_cluster_runs(
    amqp_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    make_progdef(
        catalogue,
        "sulky",
        SULKY,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        init="main:init",
        style="function",
    )
    sulky = load_catalogue(catalogue)["sulky"].mailbox
    with own_vhost(amqp_url) as url:
        # As an earlier run, or a flow submitted while it was down, may have left it.
        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_declare(sulky, durable=True)
        connection.close()
        up, env = start_up(catalogue, url, tmp_path)
        seen: list[str] = []
        try:
            lines_until(up.stderr, "dagyo: executor sulky", seen)
            assert seen[-1].endswith("exited with status 2; starting it again in 1 s\n"), seen
            lines_until(up.stderr, "the cluster is up", seen)
            assert hello(env) == [f"hello name-{i}" for i in range(3)]
            again = lines_until(up.stderr, "dagyo: executor sulky", seen)
            assert again.endswith("exited with status 2; starting it again in 2 s\n"), seen
            assert up.poll() is None, "".join(seen)
        finally:
            _, stderr = stop(up)
        assert "stopping the cluster" not in "".join(seen) + stderr
        queues, _ = broker_leftovers(url)
        assert sulky not in queues, "the mailbox of a progdef that never started is left"


def test_up_clean_leaves_nothing_in_the_vhost_at_a_clean_stop(
    amqp_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    with own_vhost(amqp_url) as url:
        up, env = start_up(catalogue, url, tmp_path, "--clean")
        seen: list[str] = []
        try:
            lines_until(up.stderr, "the cluster is up", seen)
            assert hello(env) == [f"hello name-{i}" for i in range(3)]
        finally:
            code, stderr = stop(up)
        assert code == 0, "".join(seen) + stderr
        assert broker_leftovers(url) == ([], [])
