"""Submit refuses, at once, a flow the running executors could never hold together, and a
flow whose progdef's last executor drained and said goodbye."""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.client.api import SchedulerRefused
from scheduler.service.config import SchedulerSettings
from tests.cluster import LocalCluster
from tests.scheduler.fake_executor import WAIT_S, Client, mailboxes

# Long enough that only a goodbye, not the heartbeat timeout, can explain a prompt refusal.
HEARTBEAT_TIMEOUT_S = 60.0


def _greets(n: int) -> dict[str, object]:
    nodes: dict[str, object] = {"names": {"progdef": "source"}}
    edges = []
    upstream = "names.src"
    for i in range(n):
        nodes[f"hi{i}"] = {"progdef": "greet"}
        edges.append({"from": upstream, "to": f"hi{i}.name"})
        upstream = f"hi{i}.greeting"
    return {
        "name": "greets",
        "nodes": nodes,
        "edges": edges,
        "consts": [{"to": "names.count", "values": [{"value": 3}]}],
        "exports": {"out": upstream},
    }


def test_a_flow_with_more_jobs_of_a_progdef_than_its_slots_is_refused(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        broker_url,
        tmp_path,
        names=("source", "greet"),
        max_jobs=2,
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
    ).start()
    try:
        with pytest.raises(SchedulerRefused) as refused:
            cluster.submit(_greets(3))
        assert "progdef greet: the flow has 3 jobs of it but its executors hold 2 at once" in str(
            refused.value
        )
        record, exports = cluster.run(_greets(2))
        assert len(exports["out"]) == 3
    finally:
        cluster.close()


def test_submit_is_refused_at_once_after_the_last_executor_drained(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        broker_url,
        tmp_path,
        names=("source", "greet"),
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
        drain_grace_s=1.0,
    ).start()
    try:
        cluster.run(_greets(1))
        greet = cluster.executors["greet"]
        greet.send_signal(signal.SIGTERM)
        assert greet.wait(timeout=30) == 0
        with pytest.raises(SchedulerRefused) as refused:
            cluster.submit(_greets(1))
        assert "progdef greet: no executor serves mailbox" in str(refused.value)
    finally:
        cluster.close()


def test_a_job_no_executor_took_leaves_its_mailbox_at_the_flow_deadline(
    settings: SchedulerSettings, catalogue: Path
) -> None:
    # Nothing serves the mailboxes: the jobs wait there until the flow's deadline.
    client = Client(dataclasses.replace(settings, require_consumers=False))
    try:
        flow_id = client.submit(deadline_s=1.0)
        deadline = time.monotonic() + WAIT_S
        while client.get(flow_id).state != pb.FLOW_STATE_FAILED:
            assert time.monotonic() < deadline, "the flow did not fail at its deadline"
            time.sleep(0.05)
        left = {}
        while time.monotonic() < deadline:
            left = {m: _depth(settings.queue_url, m) for m in mailboxes(catalogue)}
            if not any(left.values()):
                break
            time.sleep(0.1)
        assert not any(left.values()), f"jobs left in the mailboxes: {left}"
    finally:
        client.close()


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        connection.close()
