"""`dagyo up` as a Deployment: a dead executor is started again, the rest keep running; each
executor sees only its own progdef's secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pika
import pytest

from executor.core.progdef import load_catalogue
from executor.core.version import VERSION_FILE
from scheduler.local_cluster import LocalCluster
from tests.cluster import copy_catalogue, state_of
from tests.commands import free_address, lines_until
from tests.conftest import EXAMPLES, ROOT
from tests.embedded import TEXT, make_progdef, source
from tests.waiting import eventually

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow


def consumers(url: str, mailbox: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(mailbox, passive=True).method.consumer_count)
    finally:
        connection.close()


def test_up_starts_a_killed_executor_again_and_then_serves_a_flow(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    mailboxes = {name: p.mailbox for name, p in load_catalogue(catalogue).items()}
    address = free_address("127.0.0.1")
    env = {
        **os.environ,
        "DAGYO_QUEUE": broker_url,
        "DAGYO_STATE": ":memory:",
        "DAGYO_SCHEDULER": address,
        "DAGYO_METRICS_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DAGYO_PROGDEFS", None)
    dagyo = [sys.executable, "-c", "from scheduler.cli import main; main()"]
    out = tmp_path / "up.out"
    with out.open("w") as stdout:
        up = subprocess.Popen(
            [*dagyo, "up", "--progdefs", str(catalogue), "--listen", address, "--no-ui"],
            env=env,
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    seen: list[str] = []
    try:
        lines_until(up.stderr, "the cluster is up", seen)
        pids = dict(re.findall(r"executor (\w+): pid (\d+)", out.read_text()))
        os.kill(int(pids["greet"]), signal.SIGKILL)
        line = lines_until(up.stderr, "exited with status", seen)
        assert line == (
            f"dagyo: executor greet (pid {pids['greet']}) exited with status -9; "
            "starting it again in 1 s\n"
        )

        def greet_consumed() -> bool:
            assert up.poll() is None, "".join(seen)
            return consumers(broker_url, mailboxes["greet"]) > 0

        eventually(greet_consumed, 60, what=lambda: f"greet consumed again:\n{out.read_text()}")
        started = re.findall(r"executor (\w+): pid (\d+)", out.read_text())
        assert [name for name, _ in started].count("greet") == 2
        assert up.poll() is None
        os.kill(int(pids["void_sink"]), 0)  # the others kept running
        submitted = subprocess.run(
            [*dagyo, "flow", "submit", str(EXAMPLES / "hello.json"), "--wait"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submitted.returncode == 0, submitted.stderr
        assert [json.loads(line)["value"]["text"] for line in submitted.stdout.splitlines()] == [
            f"hello name-{i}" for i in range(3)
        ]
        up.send_signal(signal.SIGINT)
        _, stderr = up.communicate(timeout=60)
        assert up.returncode == 0, "".join(seen) + stderr
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()


READ_TOKEN = """
import os
from executor.core.types import Text

def handler(ctx, item):
    return Text(text=os.environ.get("KEEPER_TOKEN", "<unset>"))
"""


def test_an_executor_sees_only_its_own_progdefs_secrets(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_TOKEN", "s3cret")
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source",))
    for name, secrets in (("keeper", ["KEEPER_TOKEN"]), ("snoop", [])):
        make_progdef(
            catalogue,
            name,
            READ_TOKEN,
            inputs={"items": TEXT},
            outputs={"out": TEXT},
            run="main:handler",
            style="function",
            secrets=secrets,
        )
        (catalogue / name / VERSION_FILE).write_text(f"test-{uuid.uuid4().hex[:12]}\n")
    flow = {
        "name": "secrets",
        "nodes": {
            "s": {"progdef": "source"},
            "k": {"progdef": "keeper"},
            "n": {"progdef": "snoop"},
        },
        "edges": [{"from": "s.src", "to": "k.items"}, {"from": "s.src", "to": "n.items"}],
        "consts": [{"to": "s.count", **source(1)}],
        "exports": {"keeper": "k.out", "snoop": "n.out"},
    }
    cluster = LocalCluster(progdefs_dir=catalogue, queue_url=broker_url)
    with cluster:
        from scheduler.client.api import SchedulerClient

        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(json.dumps(flow))
            record = eventually(
                lambda: client.get(flow_id),
                60,
                until=lambda record: state_of(record) not in ("pending", "running"),
                what="the flow's end",
            )
    assert state_of(record) == "succeeded", record
    exports = {e.export: json.loads(e.value_json) for e in record.exports}
    assert exports == {"keeper": {"text": "s3cret"}, "snoop": {"text": "<unset>"}}
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        for progdef in cluster.catalogue.values():
            connection.channel().queue_delete(progdef.mailbox)
    finally:
        connection.close()
