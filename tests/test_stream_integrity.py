"""Forged frames in a running flow's queues fail the flow naming the stream, never a wrong
count, a wrong result or a hang: a frame without the stream's producer token (a stray
end-of-stream, a forged result), and, from a producer holding it, a lost frame or a frame
of another typename."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from executor.core.constants import export_queue, stream_queue
from executor.core.types import Int64, Text
from executor.pb.dagyo.v1 import failure_pb2
from executor.pb.dagyo.v1.frame_pb2 import Frame
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import slow_flow


@pytest.fixture
def cluster(broker_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    # One item per frame, so the streams are still open when a forged frame gets in.
    started = LocalCluster(
        broker_url, tmp_path, names=("source", "slow", "count"), env={"DAGYO_FRAME_MAX_ITEMS": "1"}
    ).start()
    yield started
    started.close()


def forge(cluster: LocalCluster, queue: str, frame: Frame) -> None:
    with cluster.channel() as channel:
        channel.confirm_delivery()
        while True:  # the stream is full most of the time: retry until it takes the frame
            try:
                channel.basic_publish("", queue, frame.SerializeToString())
                return
            except pika.exceptions.NackError:
                time.sleep(0.01)


def failed_with(cluster: LocalCluster, flow_id: str, node: str) -> Any:
    record = cluster.wait(flow_id)
    assert state_of(record) == "failed"
    assert record.failure.node == node
    assert record.failure.kind == failure_pb2.FAILURE_KIND_PANIC
    assert cluster.flow_queues(record.id) == []
    return record.failure.error


def export_token(cluster: LocalCluster, flow_id: str, export: str) -> str:
    """The producer token the scheduler gave an export stream: a buggy producer's frames
    carry it, a forger's do not."""
    assert cluster.scheduler is not None
    with cluster.scheduler.lifecycle.table.lock:
        return cluster.scheduler.lifecycle.table.flows[flow_id].runtime.exports[export].token


def test_a_forged_end_of_stream_ahead_of_the_items_fails_the_flow_not_the_count(
    cluster: LocalCluster,
) -> None:
    # Forged before the first real frame: it made the count of 4 items report 0.
    flow_id = cluster.submit(slow_flow(4, 300))
    forged = Frame(end_of_stream=True, seq=0, typename="dagyo.types.Text")
    forge(cluster, stream_queue(flow_id, "n", "items"), forged)
    error = failed_with(cluster, flow_id, "n")
    assert "stream w.items -> n.items: a frame without the producer token" in error


def test_a_forged_export_frame_never_replaces_the_result(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(4, 300))
    forged = Frame(
        items=[Int64(value=999999).SerializeToString()],
        seq=0,
        end_of_stream=True,
        typename="dagyo.types.Int64",
    )
    forge(cluster, export_queue(flow_id, "total"), forged)
    error = failed_with(cluster, flow_id, "n")
    assert "export total (from n.total): a frame without the producer token" in error
    assert all("999999" not in export.value_json for export in cluster.wait(flow_id).exports)


def test_a_frame_of_another_typename_fails_the_flow_naming_both(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    forged = Frame(
        items=[Text(text="x").SerializeToString()],
        typename="dagyo.types.Text",
        token=export_token(cluster, flow_id, "total"),
    )
    forge(cluster, export_queue(flow_id, "total"), forged)
    error = failed_with(cluster, flow_id, "n")
    assert (
        "export total (from n.total): a frame of dagyo.types.Text arrived on a stream of "
        "dagyo.types.Int64" in error
    )


def test_an_export_frame_out_of_sequence_fails_the_flow(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    forged = Frame(
        items=[Int64(value=7).SerializeToString()],
        seq=10**9,
        typename="dagyo.types.Int64",
        token=export_token(cluster, flow_id, "total"),
    )
    forge(cluster, export_queue(flow_id, "total"), forged)
    error = failed_with(cluster, flow_id, "n")
    assert "export total (from n.total): frame 1000000000 arrived where frame 0 was due" in error


def test_a_huge_frame_fails_its_flow_unread_and_other_flows_on_the_executor_run_on(
    cluster: LocalCluster,
) -> None:
    # 15 million empty items in 30 MB once held an executor for minutes: its heartbeats
    # starved and every other flow with a job on it failed as lost.
    other = cluster.submit(slow_flow(30, 200, "other"))
    wait_for_node(cluster, other, "n")
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "n")
    with cluster.channel() as channel:
        channel.confirm_delivery()
        channel.basic_publish("", stream_queue(flow_id, "n", "items"), b"\x0a\x00" * 15_000_000)
    error = failed_with(cluster, flow_id, "n")
    assert "stream w.items -> n.items: a frame of more than 8192 items" in error
    record = cluster.wait(other)
    assert state_of(record) == "succeeded", record.failure.error
    assert [e.value_json for e in record.exports] == ['{"value":"30"}']
