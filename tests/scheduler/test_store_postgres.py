"""The PostgreSQL store where it differs from SQLite: a server that closed its connections
(restarted, or pg_terminate_backend) is reconnected by the pool; a URL that does not answer
or does not parse is one line and exit 3, without its password; a database of a newer
schema is refused in one line."""

from __future__ import annotations

import psycopg
import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime, FlowState
from scheduler.service.store import StoreUnavailable, StoreWriter, open_store
from scheduler.service.store.migrations import POSTGRES
from tests.commands import free_address, run_dagyo
from tests.postgres import fresh_database, terminate


def record(flow_id: str, name: str) -> pb.FlowRecord:
    return pb.FlowRecord(id=flow_id, name=name, state=FlowState.RUNNING.proto, created=1.0)


def test_connections_the_server_closed_are_replaced_by_the_pool() -> None:
    with fresh_database() as url:
        store = open_store(url)
        writer = StoreWriter(open_store(url))
        try:
            store.create(record("f1", "before"), FlowRuntime())
            writer.create(record("f2", "before"), FlowRuntime())
            assert terminate(url.rpartition("/")[2]) >= 2  # every pooled connection is gone
            store.save(record("f1", "after"))
            writer.save(record("f2", "after"))
            assert [r.name for r in (store.get("f1"), writer.get("f2")) if r] == ["after"] * 2
        finally:
            store.close()
            writer.close()


def test_a_database_that_does_not_answer_is_named_without_its_password() -> None:
    url = "postgresql://dagyo:s3cret@127.0.0.1:1/flows"
    with pytest.raises(StoreUnavailable) as refused:
        open_store(url)
    message = str(refused.value)
    assert message.startswith(
        "cannot reach the scheduler's state at postgresql://dagyo:***@127.0.0.1:1/flows ("
    )
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize(
    "state",
    [
        "postgresql://dagyo:s3cret@127.0.0.1:1/flows",  # nothing listens
        "postgres://dagyo:s3cret@127.0.0.1:notaport/flows",  # does not parse
    ],
)
def test_dagyo_scheduler_exits_3_in_one_line_when_its_database_cannot_be_had(
    state: str, broker_url: str
) -> None:
    done = run_dagyo(
        "scheduler",
        "--no-ui",
        env={
            "DAGYO_QUEUE": broker_url,
            "DAGYO_STATE": state,
            "DAGYO_SCHEDULER": free_address(),
            "DAGYO_METRICS_PORT": "0",
        },
    )
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("dagyo: cannot reach the scheduler's state at postgres")
    assert "dagyo:***@127.0.0.1:" in line and "s3cret" not in line
    assert line.endswith("start the database, or set DAGYO_STATE to one that answers")


def test_dagyo_scheduler_refuses_a_database_of_a_newer_schema_in_one_line(
    broker_url: str,
) -> None:
    with fresh_database() as url:
        open_store(url).close()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("INSERT INTO schema_version (version, applied) VALUES (7, 0)")
        done = run_dagyo(
            "scheduler",
            "--no-ui",
            env={
                "DAGYO_QUEUE": broker_url,
                "DAGYO_STATE": url,
                "DAGYO_SCHEDULER": free_address(),
                "DAGYO_METRICS_PORT": "0",
            },
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"dagyo: the scheduler state at {url} has schema version 7, newer than this "
        f"scheduler's {len(POSTGRES)}: run the newer dagyo, or set DAGYO_STATE to another database"
    ]
