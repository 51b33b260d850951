"""Forged frames in a running flow's queues fail the flow naming the stream, never a wrong
count or a hang: a stray end-of-stream, a lost frame, a frame of another typename."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from executor.constants import export_queue, stream_queue
from executor.pb.dagyo.v1 import failure_pb2
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.types import Int64
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


def test_a_forged_end_of_stream_fails_the_flow_naming_the_edge(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    forged = Frame(end_of_stream=True, seq=1_000_000, typename="dagyo.types.Text")
    forge(cluster, stream_queue(flow_id, "w", "items"), forged)
    error = failed_with(cluster, flow_id, "w")
    assert "stream s.src -> w.items: frame 1000000 arrived where frame" in error
    assert "(a frame was lost)" in error


def test_a_frame_of_another_typename_fails_the_flow_naming_both(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    forged = Frame(items=[Int64(value=7).SerializeToString()], typename="dagyo.types.Int64")
    forge(cluster, stream_queue(flow_id, "w", "items"), forged)
    error = failed_with(cluster, flow_id, "w")
    assert (
        "stream s.src -> w.items: a frame of dagyo.types.Int64 arrived on a stream of "
        "dagyo.types.Text" in error
    )


def test_an_export_frame_out_of_sequence_fails_the_flow(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    forged = Frame(
        items=[Int64(value=7).SerializeToString()], seq=10**9, typename="dagyo.types.Int64"
    )
    forge(cluster, export_queue(flow_id, "total"), forged)
    error = failed_with(cluster, flow_id, "n")
    assert "export total (from n.total): frame 1000000000 arrived where frame 0 was due" in error
