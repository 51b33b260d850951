"""What an operator sees of a running cluster: live item counts per node and per edge in
the flow record, the queue depth of each edge, and the metrics the scheduler and its
executors serve for Prometheus (scraped over HTTP), on a real cluster."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.metrics import MetricsServer
from tests.cluster import LocalCluster
from tests.waiting import eventually

ITEMS = 100
SLOW_FLOW = {
    "name": "watched",
    "nodes": {
        "names": {"progdef": "source"},
        "lag": {"progdef": "slow"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [{"from": "names.src", "to": "lag.items"}, {"from": "lag.items", "to": "out.sink"}],
    "consts": [
        {"to": "names.count", "values": [{"value": ITEMS}]},
        {"to": "lag.delay_ms", "values": [{"value": 30}]},
    ],
}


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        broker_url,
        tmp_path_factory.mktemp("observed"),
        names=("source", "slow", "void_sink"),
        heartbeat_interval_s=0.3,
        env={"DAGYO_METRICS_PORT": "0"},  # each executor serves /metrics on a free port
    ).start()
    try:
        yield cluster
    finally:
        cluster.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def value(metrics: str, name: str, **labels: str) -> float:
    """One sample of a scrape, its labels in any order; 0 when it is not there."""
    for line in metrics.splitlines():
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if found and found.group(1) == name:
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
            if pairs == labels:
                return float(found.group(3))
    return 0.0


def edges(record: pb.FlowRecord) -> list[tuple[str, str, int, int]]:
    return [(e.source, e.target, e.items_sent, e.items_received) for e in record.edges]


def test_counts_move_per_node_and_edge_while_the_flow_runs_and_metrics_rate_them(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    assert cluster.scheduler is not None
    scheduler_metrics = MetricsServer(
        port=0, host="127.0.0.1", metrics=cluster.scheduler.metrics, healthy=lambda: True
    ).start()
    slow = cluster.health_port("slow")
    try:
        flow_id = cluster.submit(SLOW_FLOW)

        def mid_way(record: pb.FlowRecord) -> bool:
            out = record.nodes[2]  # lag sends one item every 30 ms: a few a frame
            sent = record.edges[1].items_sent  # from lag's heartbeat, counted as it went
            running = out.state == pb.NODE_STATE_RUNNING
            return running and 0 < out.items_received < ITEMS and 0 < sent < ITEMS

        with cluster.client() as client:  # seen mid-way: counts come from heartbeats too
            record = eventually(lambda: client.get(flow_id), until=mid_way, what="a live count")
        assert [(e.source, e.target) for e in record.edges] == [
            ("names.src", "lag.items"),
            ("lag.items", "out.sink"),
        ]
        # Each executor beats on its own: received may show ahead of sent for a moment.
        assert 0 < record.edges[1].items_received < ITEMS
        live = scrape(slow)
        assert 0 < value(live, "dagyo_executor_items_sent_total", edge="lag.items") < ITEMS

        end = cluster.wait(flow_id)
        assert end.state == pb.FLOW_STATE_SUCCEEDED
        assert edges(end) == [
            ("names.src", "lag.items", ITEMS, ITEMS),
            ("lag.items", "out.sink", ITEMS, ITEMS),
        ]
        # A const counts as received: names got its count, lag its delay_ms.
        assert [(n.node, n.items_received, n.items_sent) for n in end.nodes] == [
            ("names", 1, ITEMS),
            ("lag", ITEMS + 1, ITEMS),
            ("out", ITEMS, 0),
        ]
        assert any(e.sampled for e in end.edges), "no edge's queue depth was sampled"
        assert all(0 < n.published <= n.started <= n.ended <= end.ended for n in end.nodes)

        done = scrape(slow)
        assert value(done, "dagyo_executor_items_received_total", edge="lag.items") == ITEMS
        assert value(done, "dagyo_executor_items_sent_total", edge="lag.items") == ITEMS
        assert value(done, "dagyo_executor_job_duration_seconds_count", outcome="ended") == 1
        assert value(done, "dagyo_executor_job_duration_seconds_sum", outcome="ended") > 1.0
        assert value(done, "dagyo_executor_queue_wait_seconds_count") == 1

        ours = scrape(scheduler_metrics.port)
        assert value(ours, "dagyo_scheduler_flow_duration_seconds_count", state="succeeded") == 1
        assert value(ours, "dagyo_scheduler_flow_duration_seconds_sum", state="succeeded") > 1.0
        assert (
            value(
                ours, "dagyo_scheduler_job_duration_seconds_count", progdef="slow", outcome="ended"
            )
            == 1
        )
        assert value(ours, "dagyo_scheduler_queue_wait_seconds_count", progdef="slow") == 1
        for edge in ("names.src -> lag.items", "lag.items -> out.sink"):
            assert (
                value(ours, "dagyo_scheduler_edge_items_total", flow="watched", edge=edge) == ITEMS
            )
    finally:
        scheduler_metrics.stop()
