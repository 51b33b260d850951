"""Faults on a real cluster: each asserts the flow's end, the report, and no queue left."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from executor.core.constants import stream_queue
from executor.pb.dagyo.v1 import failure_pb2
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import slow_flow

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow


@pytest.fixture
def make_cluster(broker_url: str, tmp_path: Path) -> Iterator[Any]:
    clusters: list[LocalCluster] = []

    def make(*names: str, **options: Any) -> LocalCluster:
        cluster = LocalCluster(broker_url, tmp_path / f"c{len(clusters)}", names=names, **options)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.close()


def total(record: Any) -> str:
    import json

    return json.loads(record.exports[-1].value_json)["value"]


def test_a_panic_fails_the_flow_with_its_report(make_cluster: Any) -> None:
    cluster = make_cluster("explode", "count")
    record, _ = cluster.run(
        {
            "name": "boom",
            "nodes": {"x": {"progdef": "explode"}, "n": {"progdef": "count"}},
            "edges": [{"from": "x.items", "to": "n.items"}],
            "consts": [{"to": "x.items", "values": [{"text": "panic here"}]}],
            "exports": {"total": "n.total"},
        }
    )
    assert state_of(record) == "failed"
    failure = record.failure
    assert (failure.node, failure.progdef, failure.kind) == (
        "x",
        "explode",
        failure_pb2.FAILURE_KIND_PANIC,
    )
    assert failure.error == "RuntimeError: explode: item 'panic here' starts with 'panic'"
    assert "Traceback" in failure.traceback and "raise RuntimeError" in failure.traceback
    assert failure.executor.startswith("explode-")
    with cluster.client() as client:
        assert [f.node for f in client.failures(record.id)] == ["x"]
    assert cluster.flow_queues(record.id) == []


def test_a_killed_executor_fails_its_flow_within_the_heartbeat_timeout(
    make_cluster: Any,
) -> None:
    cluster = make_cluster("source", "slow", "count", heartbeat_timeout_s=3.0)
    flow_id = cluster.submit(slow_flow(1000, 50))
    wait_for_node(cluster, flow_id, "w")
    killed = time.monotonic()
    cluster.executors["slow"].send_signal(signal.SIGKILL)
    record = cluster.wait(flow_id, timeout_s=30)
    noticed = time.monotonic() - killed
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_LOST
    assert (record.failure.node, record.failure.progdef) == ("w", "slow")
    assert record.failure.executor.startswith("slow-")
    assert noticed < 3.0 + 5.0, f"took {noticed:.1f} s to notice a 3 s heartbeat loss"
    assert cluster.flow_queues(record.id) == []


def test_sigterm_drains_the_running_job_and_exits_0(make_cluster: Any) -> None:
    cluster = make_cluster("source", "slow", "count")
    flow_id = cluster.submit(slow_flow(40, 25))
    wait_for_node(cluster, flow_id, "w")
    executor = cluster.executors["slow"]
    executor.send_signal(signal.SIGTERM)
    assert executor.wait(30) == 0
    record = cluster.wait(flow_id)
    assert state_of(record) == "succeeded"
    assert total(record) == "40"
    assert cluster.flow_queues(record.id) == []


def test_a_draining_executor_leaves_unstarted_jobs_for_another(make_cluster: Any) -> None:
    cluster = make_cluster("source", "slow", "count", max_jobs=1)
    first = cluster.submit(slow_flow(40, 25, "first"))
    wait_for_node(cluster, first, "w")
    second = cluster.submit(slow_flow(3, 1, "second"))
    # The only slot is busy: the second flow waits to be admitted, its job not published.
    old = cluster.executors["slow"]
    old.send_signal(signal.SIGTERM)
    assert old.wait(30) == 0
    assert state_of(cluster.wait(first)) == "succeeded"
    with cluster.client() as client:
        waiting = client.get(second)
    assert state_of(waiting) == "pending"
    assert waiting.waiting.startswith("waiting for 1 slot of slow, 0 free")
    cluster.start_executor("slow")
    record = cluster.wait(second)
    assert state_of(record) == "succeeded" and total(record) == "3"


def test_cancel_stops_every_job_and_deletes_every_queue(make_cluster: Any) -> None:
    cluster = make_cluster("source", "slow", "count")
    flow_id = cluster.submit(slow_flow(1000, 50))
    wait_for_node(cluster, flow_id, "w")
    with cluster.client() as client:
        client.cancel(flow_id)
    record = cluster.wait(flow_id)
    assert state_of(record) == "cancelled"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_CANCELLED
    assert cluster.flow_queues(record.id) == []
    # the stopped job freed its slot: the executor takes the next flow at once
    record, _ = cluster.run(slow_flow(3, 1))
    assert state_of(record) == "succeeded"


def test_an_undecodable_frame_panics_the_job_naming_the_edge(make_cluster: Any) -> None:
    # One item per frame, so the stream is still open when the bad frame gets in.
    cluster = make_cluster("source", "slow", "count", env={"DAGYO_FRAME_MAX_ITEMS": "1"})
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    with cluster.channel() as channel:
        channel.confirm_delivery()
        while True:  # the stream is full most of the time: retry until it takes the frame
            try:
                channel.basic_publish("", stream_queue(flow_id, "w", "items"), b"\xff bad")
                break
            except pika.exceptions.NackError:
                time.sleep(0.01)
    record = cluster.wait(flow_id)
    assert state_of(record) == "failed"
    assert record.failure.node == "w"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_PANIC
    assert "s.src -> w.items" in record.failure.error
    assert cluster.flow_queues(record.id) == []


def test_a_scheduler_restart_keeps_the_record_and_the_flow_finishes(
    make_cluster: Any,
) -> None:
    cluster = make_cluster("source", "slow", "count")
    flow_id = cluster.submit(slow_flow(60, 20))
    wait_for_node(cluster, flow_id, "w")
    cluster.stop_scheduler()
    time.sleep(0.5)
    cluster.start_scheduler()
    record = cluster.wait(flow_id)
    assert state_of(record) == "succeeded"
    assert total(record) == "60"
    assert cluster.flow_queues(record.id) == []


def test_a_slow_consumer_holds_its_stream_within_the_bound(make_cluster: Any) -> None:
    cluster = make_cluster("source", "slow", "count", env={"DAGYO_FRAME_MAX_ITEMS": "10"})
    flow_id = cluster.submit(slow_flow(2000, 1))
    queue = stream_queue(flow_id, "w", "items")
    depths: list[int] = []
    done = threading.Event()

    def sample() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(cluster.amqp_url))
        channel = connection.channel()
        try:
            while not done.is_set():
                try:
                    depths.append(channel.queue_declare(queue, passive=True).method.message_count)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()
                done.wait(0.02)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    record = cluster.wait(flow_id, timeout_s=120)
    done.set()
    sampler.join()
    assert state_of(record) == "succeeded"
    assert total(record) == "2000"
    assert depths and max(depths) <= 16
    assert max(depths) >= 12, f"the producer never filled the stream: {max(depths)}"


def test_a_drain_past_its_grace_period_stops_the_job_with_a_panic_saying_so(
    make_cluster: Any,
) -> None:
    cluster = make_cluster("source", "slow", "count", drain_grace_s=1.0)
    flow_id = cluster.submit(slow_flow(1000, 50))
    wait_for_node(cluster, flow_id, "w")
    executor = cluster.executors["slow"]
    executor.send_signal(signal.SIGTERM)
    assert executor.wait(30) == 0
    record = cluster.wait(flow_id)
    assert state_of(record) == "failed"
    assert record.failure.node == "w"
    assert record.failure.error == (
        "the executor was shutting down and stopped this job after the drain grace period of 1 s"
    )
    assert cluster.flow_queues(record.id) == []


def test_failures_follow_shows_a_panicking_flows_report_as_it_happens(
    make_cluster: Any,
) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    cluster = make_cluster("explode", "count")
    assert cluster.scheduler is not None

    def boom(text: str) -> Any:
        record, _ = cluster.run(
            {
                "name": "boom",
                "nodes": {"x": {"progdef": "explode"}, "n": {"progdef": "count"}},
                "edges": [{"from": "x.items", "to": "n.items"}],
                "consts": [{"to": "x.items", "values": [{"text": text}]}],
                "exports": {"total": "n.total"},
            }
        )
        return record

    # A failure recorded before it starts is shown first: once it is, the follower follows.
    before = boom("panic before")
    follow = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from scheduler.cli import main; main()",
            "failures",
            "--follow",
            "--json",
        ],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "DAGYO_QUEUE": cluster.amqp_url,
            "DAGYO_SCHEDULER": cluster.scheduler.address,
        },
    )
    try:
        assert follow.stdout is not None
        report = json.loads(follow.stdout.readline())
        assert (report["flow_id"], report["error"]) == (
            before.id,
            "RuntimeError: explode: item 'panic before' starts with 'panic'",
        )
        record = boom("panic live")
        report = json.loads(follow.stdout.readline())
        assert (report["flow_id"], report["node"], report["progdef"]) == (record.id, "x", "explode")
        assert report["error"] == "RuntimeError: explode: item 'panic live' starts with 'panic'"
        follow.send_signal(signal.SIGINT)
        assert follow.wait(20) == 0
    finally:
        if follow.poll() is None:
            follow.kill()


def test_a_job_no_executor_will_take_fails_its_flow_instead_of_waiting_forever(
    make_cluster: Any,
) -> None:
    cluster = make_cluster("source", "slow", "count", heartbeat_timeout_s=4.0)
    executor = cluster.executors["slow"]
    executor.send_signal(signal.SIGKILL)  # gone without a goodbye, heard from a moment ago
    assert executor.wait(30) == -signal.SIGKILL
    flow_id = cluster.submit(slow_flow(3, 1))
    record = cluster.wait(flow_id, timeout_s=30)
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_LOST
    assert record.failure.node == "w"
    mailbox = cluster.catalogue["slow"].mailbox
    assert record.failure.error.startswith(
        f"job w (progdef slow) was never taken: no executor pulls {mailbox}"
    )
    assert cluster.flow_queues(record.id) == []
