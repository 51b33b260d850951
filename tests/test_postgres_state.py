"""A cluster whose scheduler keeps its state in PostgreSQL (DAGYO_STATE=postgresql://…):
`dagyo up` runs hello flows, one after the server closed every connection of the scheduler,
and their records and exports are in the database afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.store import open_store
from tests.cluster import copy_catalogue
from tests.commands import free_address, read_until
from tests.conftest import EXAMPLES, ROOT
from tests.postgres import fresh_database, terminate

HELLO = [f"hello name-{i}" for i in range(3)]
DAGYO = [sys.executable, "-c", "from scheduler.cli import main; main()"]


def test_hello_flows_run_with_their_state_in_postgresql_across_lost_connections(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    address = free_address("127.0.0.1")
    with fresh_database() as state:
        env = {
            **os.environ,
            "DAGYO_QUEUE": broker_url,
            "DAGYO_STATE": state,
            "DAGYO_SCHEDULER": address,
            "DAGYO_UI": "off",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("DAGYO_PROGDEFS", None)
        up = subprocess.Popen(
            [*DAGYO, "up", "--progdefs", str(catalogue), "--listen", address],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            read_until(up, "the cluster is up", timeout_s=60)
            assert hello(env) == HELLO
            assert terminate(state.rpartition("/")[2]) >= 1  # as a database restart does
            assert hello(env) == HELLO
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        store = open_store(state)
        try:
            flows, _ = store.recent()
            records = [store.get(flow.id) for flow in flows]
        finally:
            store.close()
    assert [r.state for r in records if r] == [pb.FLOW_STATE_SUCCEEDED] * 2
    for record in records:
        assert record is not None
        assert [json.loads(e.value_json)["text"] for e in record.exports] == HELLO


def hello(env: dict[str, str]) -> list[str]:
    """The exports of examples/hello.json submitted with --wait."""
    submitted = subprocess.run(
        [*DAGYO, "flow", "submit", str(EXAMPLES / "hello.json"), "--wait"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    return [json.loads(line)["value"]["text"] for line in submitted.stdout.splitlines()]
