"""A cluster whose scheduler keeps its state in PostgreSQL (DAGYO_STATE=postgresql://…):
`dagyo up` runs a hello flow, and its record and exports are in the database afterwards."""

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
from tests.postgres import fresh_database

HELLO = [f"hello name-{i}" for i in range(3)]


def test_a_hello_flow_runs_with_its_state_in_postgresql(broker_url: str, tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    address = free_address("127.0.0.1")
    dagyo = [sys.executable, "-c", "from scheduler.cli import main; main()"]
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
            [*dagyo, "up", "--progdefs", str(catalogue), "--listen", address],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            read_until(up, "the cluster is up", timeout_s=60)
            submitted = subprocess.run(
                [*dagyo, "flow", "submit", str(EXAMPLES / "hello.json"), "--wait"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert submitted.returncode == 0, submitted.stderr
            got = [json.loads(line)["value"]["text"] for line in submitted.stdout.splitlines()]
            assert got == HELLO
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        store = open_store(state)
        try:
            [flow], _ = store.recent()
            record = store.get(flow.id)
        finally:
            store.close()
    assert record is not None and record.state == pb.FLOW_STATE_SUCCEEDED
    assert [json.loads(e.value_json)["text"] for e in record.exports] == HELLO
