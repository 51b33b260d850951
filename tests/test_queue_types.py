"""DAGYO_QUEUE_TYPE: dagyo's durable queues are classic or quorum, and never change type."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.amqp import connect
from executor.core.errors import DagyoError, QueueTypeMismatch
from executor.core.settings import queue_type_of
from executor.core.topology import QueueType
from scheduler.service.broker import Broker
from tests.cluster import LocalCluster, own_vhost
from tests.conftest import PROGDEFS, ROOT, rabbitmqctl, vhost_of
from tests.flows import CASES, same_exports

ONE = "amqp://guest:guest@h1:5672/v"
TWO = f"{ONE};amqp://guest:guest@h2:5672/v"
HELLO = next(case for case in CASES if case.id == "hello")


def queue_types(url: str) -> dict[str, str]:
    out = rabbitmqctl(
        "list_queues", "-p", vhost_of(url), "-q", "--no-table-headers", "name", "type"
    )
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture
def vhost_url(broker_url: str) -> Iterator[str]:
    with own_vhost(broker_url) as url:
        yield url


def test_quorum_when_the_variable_says_so_or_several_urls_are_listed() -> None:
    assert queue_type_of(ONE, {}) is QueueType.CLASSIC
    assert queue_type_of(TWO, {}) is QueueType.QUORUM
    assert queue_type_of(ONE, {"DAGYO_QUEUE_TYPE": "quorum"}) is QueueType.QUORUM
    assert queue_type_of(TWO, {"DAGYO_QUEUE_TYPE": "classic"}) is QueueType.CLASSIC
    assert queue_type_of(TWO, {"DAGYO_QUEUE_TYPE": ""}) is QueueType.QUORUM


def test_a_bad_queue_type_names_the_variable() -> None:
    with pytest.raises(DagyoError, match=r"DAGYO_QUEUE_TYPE='replicated' is not a queue type"):
        queue_type_of(ONE, {"DAGYO_QUEUE_TYPE": "replicated"})


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "executor", str(PROGDEFS / "greet")],
        ["dagyo", "scheduler", "--listen", "127.0.0.1:0"],
    ],
    ids=["executor", "scheduler"],
)
def test_a_bad_queue_type_stops_a_process_with_one_line(
    command: list[str], tmp_path: Path, broker_url: str
) -> None:
    env = dict(
        os.environ,
        DAGYO_QUEUE=broker_url,
        DAGYO_QUEUE_TYPE="replicated",
        DAGYO_METRICS_PORT="-1" if "executor" in command else "0",
        DAGYO_STATE=str(tmp_path / "state.sqlite3"),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "DAGYO_QUEUE_TYPE" in line]
    assert len(lines) == 1 and "not a queue type" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_quorum_makes_every_durable_queue_a_quorum_queue_and_flows_run(
    vhost_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_QUEUE_TYPE", "quorum")
    cluster = LocalCluster(vhost_url, tmp_path, names=("source", "greet", "void_sink")).start()
    try:
        record, exports = cluster.run(HELLO.flow)
        assert same_exports(HELLO, exports), exports
        types = queue_types(vhost_url)
        mailboxes = [progdef.mailbox for progdef in cluster.catalogue.values()]
        for queue in ("dagyo.scheduler.events.0", "dagyo.scheduler.failures.f", *mailboxes):
            assert types.get(queue) == "quorum", types
    finally:
        cluster.close()


def test_a_classic_mailbox_is_not_redeclared_as_quorum(vhost_url: str, tmp_path: Path) -> None:
    mailbox = "dagyo.jobs.greet.0123456789ab"
    connection = connect(vhost_url)
    try:
        connection.channel().queue_declare(mailbox, durable=True)
    finally:
        connection.close()
    env = dict(
        os.environ,
        DAGYO_QUEUE=vhost_url,
        DAGYO_QUEUE_TYPE="quorum",
        DAGYO_JOBS=mailbox,
        DAGYO_METRICS_PORT="-1",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-m", "executor", str(PROGDEFS / "greet")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if mailbox in line and "classic" in line]
    assert len(lines) == 1, result.stderr
    assert "new version of the progdef" in lines[0] and "DAGYO_QUEUE_TYPE=classic" in lines[0]
    assert "Traceback" not in result.stderr
    assert queue_types(vhost_url)[mailbox] == "classic"

    broker = Broker(vhost_url, queue_type=QueueType.QUORUM)
    broker.start()
    try:
        with pytest.raises(QueueTypeMismatch, match="exists on the broker as a classic queue"):
            broker.declare_mailbox(mailbox)
    finally:
        broker.close()
