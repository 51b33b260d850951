"""The counts a flow record keeps once the flow has ended add up, however it ended: no edge
received more than its source sent, and each node's counts are those of its edges and
consts (docs/observability.md), on a real cluster."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.cluster import LocalCluster, state_of
from tests.conftest import EXAMPLES, ROOT
from tests.waiting import eventually


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = LocalCluster(
        broker_url,
        tmp_path_factory.mktemp("counts"),
        names=("source", "greet", "void_sink", "explode", "count"),
    ).start()
    yield started
    started.close()


def assert_counts_add_up(record: pb.FlowRecord, consts: dict[str, int]) -> None:
    """Every edge received at most what it was sent; a node received what its edges
    received plus its consts, and sent what each edge from it was sent."""
    nodes = {n.node: n for n in record.nodes}
    for edge in record.edges:
        where = f"edge {edge.source} -> {edge.target}"
        assert edge.items_received <= edge.items_sent, f"{where}\n{record}"
        assert edge.items_sent == nodes[edge.source.split(".")[0]].items_sent, f"{where}\n{record}"
    for name, node in nodes.items():
        fed = sum(e.items_received for e in record.edges if e.target.startswith(f"{name}."))
        assert node.items_received == fed + consts.get(name, 0), f"node {name}\n{record}"


def test_a_failed_flow_counts_the_items_of_the_job_that_panicked(cluster: LocalCluster) -> None:
    flow = json.loads((EXAMPLES / "boom.json").read_text())
    record = cluster.wait(cluster.submit(flow))
    assert state_of(record) == "failed"
    fuse = next(n for n in record.nodes if n.node == "fuse")
    # Both const items were taken, the second panicked (the first, still in a frame not
    # yet sent, never left: items count as sent when their frame goes).
    assert fuse.items_received == 2, record
    assert_counts_add_up(record, {"fuse": 2})


# Ten million greetings: a flow that runs until it is cancelled.
ENDLESS = {
    "name": "counted",
    "nodes": {
        "s": {"progdef": "source"},
        "hi": {"progdef": "greet"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [{"from": "s.src", "to": "hi.name"}, {"from": "hi.greeting", "to": "out.sink"}],
    "consts": [{"to": "s.count", "values": [{"value": 10_000_000}]}],
}


def test_a_cancelled_flow_keeps_counts_that_add_up(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(ENDLESS)
    with cluster.client() as client:  # items reach the sink: the flow is well under way
        eventually(
            lambda: client.get(flow_id),
            60,
            until=lambda record: next(n for n in record.nodes if n.node == "out").items_received,
            what="items at the sink",
        )
        client.cancel(flow_id)
        record = client.get(flow_id)
    assert state_of(record) == "cancelled"
    assert next(n for n in record.nodes if n.node == "out").items_received > 0
    assert_counts_add_up(record, {"s": 1})


def test_the_watch_progress_line_shows_the_items_the_sink_received(cluster: LocalCluster) -> None:
    assert cluster.scheduler is not None
    flow_id = cluster.submit(ENDLESS)
    leader, follower = os.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "flow", "watch", flow_id],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": str(ROOT),
            "DAGYO_SCHEDULER": cluster.scheduler.address,
        },
    )
    os.close(follower)
    drawn = ""
    sink = re.compile(r"out (\d+) received")

    def sink_received() -> bool:
        nonlocal drawn
        if select.select([leader], [], [], 1)[0]:
            drawn += os.read(leader, 65536).decode(errors="replace")
        return any(int(n) > 0 for n in sink.findall(drawn))

    try:
        eventually(sink_received, 60, poll=0, what=lambda: f"items at the sink in:\n{drawn}")
    finally:
        with cluster.client() as client:
            client.cancel(flow_id)
        watch.wait(60)
        os.close(leader)
    assert f"counted {flow_id}: s " in drawn, drawn
