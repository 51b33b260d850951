"""A cluster whose scheduler keeps its state in PostgreSQL (DAGYO_STATE=postgresql://…):
`dagyo up` runs hello flows, one after the server closed every connection of the scheduler,
and their records and exports are in the database afterwards."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.store import open_store
from tests.cluster import copy_catalogue
from tests.commands import dagyo_up, exported_texts, free_address
from tests.conftest import EXAMPLES, ROOT
from tests.postgres import fresh_database, terminate

HELLO = [f"hello name-{i}" for i in range(3)]


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
        with dagyo_up("--progdefs", str(catalogue), "--listen", address, env=env) as up:
            assert exported_texts(EXAMPLES / "hello.json", env) == HELLO
            assert terminate(state.rpartition("/")[2]) >= 1  # as a database restart does
            assert exported_texts(EXAMPLES / "hello.json", env) == HELLO
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
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
