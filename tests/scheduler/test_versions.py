"""Upgrading a progdef while a flow runs on it: two versions, real executors, real broker.

The old version keeps its executor until its last job ended; then the scheduler retires
it: the executor drains and exits 0, and its empty mailbox is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from click.testing import CliRunner

from executor.core.constants import mailbox_name
from executor.core.progdef import load_catalogue
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_LOST
from scheduler.cli.local import progdefs_command
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.cluster import LocalCluster, wait_for_node
from tests.flows import consts, names
from tests.waiting import eventually

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow

WAIT_S = 60.0


def slow_flow(count: int, delay_ms: int) -> dict[str, Any]:
    return {
        "name": "slow",
        "nodes": {"s": {"progdef": "source"}, "w": {"progdef": "slow"}},
        "edges": [{"from": "s.src", "to": "w.items"}],
        "consts": [
            {"to": "s.count", "values": consts(count)},
            {"to": "w.delay_ms", "values": consts(delay_ms)},
        ],
        "exports": {"names": "w.items"},
    }


def node(record: Any, name: str) -> Any:
    (found,) = [n for n in record.nodes if n.node == name]
    return found


def mailbox_exists(url: str, name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def test_an_old_version_drains_its_last_flow_then_retires(broker_url: str, tmp_path: Path) -> None:
    # One job per executor, so a second v1 job waits in the v1 mailbox; a drain grace of
    # 1 s, so a retirement while the 3 s v1 job runs would stop it and fail its flow.
    cluster = LocalCluster(
        broker_url, tmp_path, names=("source", "slow"), max_jobs=1, drain_grace_s=1.0
    ).start()
    old: subprocess.Popen[bytes] | None = None
    try:
        v1 = cluster.catalogue["slow"].version
        first = cluster.submit(slow_flow(10, 300))  # about 3 s of work on v1
        queued = cluster.submit(slow_flow(2, 1))  # waits in the v1 mailbox meanwhile
        wait_for_node(cluster, first, "w", WAIT_S)

        # The upgrade: a new build of slow, its executor started beside the old one.
        v2 = f"test-v2-{uuid.uuid4().hex[:12]}"
        (cluster.catalogue_dir / "slow" / "VERSION").write_text(v2 + "\n")
        old = cluster.executors["slow"]
        cluster.catalogue = load_catalogue(cluster.catalogue_dir)
        assert cluster.catalogue["slow"].version == v2
        cluster.start_executor("slow")
        cluster.wait_for_consumer("slow")

        second, exports = cluster.run(slow_flow(3, 1))
        assert second.state == pb.FLOW_STATE_SUCCEEDED
        assert node(second, "w").version == v2
        assert exports == {"names": names(3)}

        # v1 is retired only after its last job ended: the old executor exits 0 then.
        assert old.wait(WAIT_S) == 0
        record = cluster.wait(first)
        assert record.state == pb.FLOW_STATE_SUCCEEDED
        assert node(record, "w").version == v1
        assert len(record.exports) == 10
        record = cluster.wait(queued)
        assert record.state == pb.FLOW_STATE_SUCCEEDED
        assert node(record, "w").version == v1
        assert len(record.exports) == 2
        assert "retired mailbox" in cluster.executor_log("slow")

        wait_gone(broker_url, mailbox_name("slow", v1))
        assert mailbox_exists(broker_url, mailbox_name("slow", v2))
        assert cluster.scheduler is not None
        result = CliRunner().invoke(
            progdefs_command, ["--versions", "--scheduler", cluster.scheduler.address]
        )
        assert result.exit_code == 0, result.output
        rows = [line.split() for line in result.output.splitlines()]
        assert rows[0] == ["progdef", "version", "state", "waiting", "running", "executors"]
        assert ["slow", v1, "retired", "0", "0", "0"] in rows
        assert ["slow", v2, "current", "0", "0", "1"] in rows
        source = cluster.catalogue["source"].version
        assert ["source", source, "current", "0", "0", "1"] in rows
        assert cluster.executors["slow"].poll() is None, "the new version's executor stays"
    finally:
        if old is not None and old.poll() is None:
            old.kill()
        cluster.close()


def test_dagyo_up_starts_the_edited_version_after_retiring_the_old(
    broker_url: str, tmp_path: Path
) -> None:
    from scheduler.local_cluster import LocalCluster as UpCluster
    from scheduler.local_cluster import private_catalogue
    from tests.conftest import PROGDEFS

    catalogue = private_catalogue(PROGDEFS, tmp_path / "progdefs", ("source", "slow"), tag="up")
    cluster = UpCluster(
        progdefs_dir=catalogue, queue_url=broker_url, heartbeat_timeout_s=4.0, log_dir=tmp_path
    )
    try:
        cluster.start()
        assert cluster.wait_ready(timeout_s=WAIT_S) == []
        v1 = load_catalogue(catalogue)["slow"].version
        v2 = f"up-v2-{uuid.uuid4().hex[:12]}"
        (catalogue / "slow" / "VERSION").write_text(v2 + "\n")
        # The idle v1 executor is retired, exits 0, and is started again on v2.

        def on_v2() -> bool:
            cluster.supervise(on_exit=lambda *_: None)
            old, new = (mailbox_exists(broker_url, mailbox_name("slow", v)) for v in (v1, v2))
            return new and not old

        eventually(on_v2, WAIT_S, what="the edited progdef's executor started")
        assert cluster.wait_ready(timeout_s=WAIT_S) == []
        assert cluster.scheduler is not None
        with SchedulerClient(cluster.address) as client:
            flow_id = client.submit(json.dumps(slow_flow(2, 1)), source="slow.json")
            eventually(
                lambda: client.get(flow_id).state == pb.FLOW_STATE_SUCCEEDED,
                WAIT_S,
                what="the flow succeeded",
            )
            assert node(client.get(flow_id), "w").version == v2
    finally:
        cluster.stop()


def upgrade(cluster: LocalCluster, name: str, tag: str) -> str:
    """Give progdef ``name`` a new version in the cluster's catalogue; return it."""
    version = f"{tag}-{uuid.uuid4().hex[:12]}"
    (cluster.catalogue_dir / name / "VERSION").write_text(version + "\n")
    cluster.catalogue = load_catalogue(cluster.catalogue_dir)
    cluster.local.catalogue = cluster.catalogue
    assert cluster.catalogue[name].version == version
    return version


def versions_table(cluster: LocalCluster) -> list[list[str]]:
    assert cluster.scheduler is not None
    result = CliRunner().invoke(
        progdefs_command, ["--versions", "--scheduler", cluster.scheduler.address]
    )
    assert result.exit_code == 0, result.output
    return [line.split() for line in result.output.splitlines()]


def wait_gone(broker_url: str, mailbox: str) -> None:
    eventually(lambda: not mailbox_exists(broker_url, mailbox), WAIT_S, what=f"{mailbox} deleted")


def test_a_version_this_scheduler_never_had_as_current_is_retired(
    broker_url: str, tmp_path: Path
) -> None:
    # The catalogue changed while no scheduler ran, and the new one starts afresh: it finds
    # the old version by its executor's heartbeats alone.
    cluster = LocalCluster(broker_url, tmp_path, names=("source", "slow"), max_jobs=1).start()
    old: subprocess.Popen[bytes] | None = cluster.executors["slow"]
    try:
        v1 = cluster.catalogue["slow"].version
        cluster.stop_scheduler()
        v2 = upgrade(cluster, "slow", "fresh")
        cluster.local.settings = dataclasses.replace(
            cluster.local.settings, state_path=str(tmp_path / "fresh.sqlite3")
        )
        cluster.start_scheduler()
        cluster.start_executor("slow")
        assert old is not None and old.wait(WAIT_S) == 0
        wait_gone(broker_url, mailbox_name("slow", v1))
        # The new executor counts once the scheduler heard its first heartbeat.
        rows = eventually(
            lambda: versions_table(cluster),
            WAIT_S,
            until=lambda rows: ["slow", v2, "current", "0", "0", "1"] in rows,
            what=f"{v2}'s executor in the versions table",
        )
        assert ["slow", v1, "retired", "0", "0", "0"] in rows
        _, exports = cluster.run(slow_flow(2, 1))
        assert exports == {"names": names(2)}
    finally:
        if old is not None and old.poll() is None:
            old.kill()
        cluster.close()


def test_a_restarted_scheduler_deletes_an_old_mailbox_no_executor_pulls(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(broker_url, tmp_path, names=("source", "slow"), max_jobs=1).start()
    try:
        v1 = cluster.catalogue["slow"].version
        old = cluster.executors["slow"]
        old.terminate()  # drains, says goodbye and exits: its mailbox stays, empty
        assert old.wait(WAIT_S) == 0
        assert mailbox_exists(broker_url, mailbox_name("slow", v1))
        cluster.stop_scheduler()
        v2 = upgrade(cluster, "slow", "restart")
        cluster.local.settings = dataclasses.replace(cluster.local.settings, unserved_mailbox_s=1.0)
        cluster.start_scheduler()  # on the same state: it knows v1 was current
        cluster.start_executor("slow")
        wait_gone(broker_url, mailbox_name("slow", v1))
        assert ["slow", v1, "retired", "0", "0", "0"] in versions_table(cluster)
        cluster.stop_scheduler()
        cluster.start_scheduler()
        rows = versions_table(cluster)
        assert ["slow", v1, "retired", "0", "0", "0"] in rows
        # Its executor may not have been heard yet by the scheduler just started.
        assert any(row[:5] == ["slow", v2, "current", "0", "0"] for row in rows)
    finally:
        cluster.close()


def test_a_job_left_in_an_old_mailbox_without_executors_fails_its_flow_as_lost(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        broker_url, tmp_path, names=("source", "slow"), max_jobs=1, heartbeat_timeout_s=3.0
    ).start()
    old = cluster.executors["slow"]
    v1 = cluster.catalogue["slow"].version
    try:
        running = cluster.submit(slow_flow(100, 100))
        queued = cluster.submit(slow_flow(2, 1))  # waits in the v1 mailbox
        wait_for_node(cluster, running, "w", WAIT_S)
        upgrade(cluster, "slow", "lost")
        cluster.start_executor("slow")
        cluster.wait_for_consumer("slow")
        old.kill()  # v1's only executor dies: nothing will take the queued job
        started = time.monotonic()
        for flow_id in (running, queued):
            record = cluster.wait(flow_id)
            assert record.state == pb.FLOW_STATE_FAILED
            assert record.failure.kind == FAILURE_KIND_LOST, record.failure.error
            assert node(record, "w").version == v1
        assert time.monotonic() - started < WAIT_S
        assert "was never taken" in cluster.wait(queued).failure.error
        # The job waited for a free slot, so it was never published; the mailbox is kept.
        with cluster.channel() as channel:
            depth = channel.queue_declare(mailbox_name("slow", v1), passive=True)
        assert depth.method.message_count == 0
    finally:
        if old.poll() is None:
            old.kill()
        with cluster.channel() as channel:
            channel.queue_delete(mailbox_name("slow", v1))
        cluster.close()
