"""The same flows give the same exports embedded (memory) and on a cluster (rabbitmq).

Embedded, they run as `dagyo run` runs them (frames of messages) and as with
DAGYO_EMBEDDED_SERIALIZE=1 (every item serialized, and checked unchanged once sent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import LocalCluster, state_of
from tests.embedded import run_flow
from tests.flows import CASES, Case, same_exports


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(broker_url, tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("transport", ["memory", "memory-serialized", "rabbitmq"])
def test_a_flow_gives_the_same_exports_on_every_transport(
    transport: str, case: Case, request: pytest.FixtureRequest
) -> None:
    if transport.startswith("memory"):
        exports, result = run_flow(case.flow, serialize=transport == "memory-serialized")
        state = result.state
        failed_node = result.failure.node if result.failure else ""
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        record, exports = cluster.run(case.flow)
        state = state_of(record)
        failed_node = record.failure.node
        assert cluster.flow_queues(record.id) == [], "a finished flow left queues behind"
    assert state == case.state
    assert failed_node == case.failed_node
    if case.state == "succeeded":
        assert same_exports(case, exports), exports


@pytest.mark.slow
def test_the_cluster_leaves_no_queue_after_many_concurrent_flows(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    hello = CASES[0]
    flow_ids = [cluster.submit(hello.flow) for _ in range(100)]
    records = [cluster.wait(flow_id, timeout_s=120) for flow_id in flow_ids]
    assert [(state_of(r), r.failure.error) for r in records] == [("succeeded", "")] * 100
    for record in records:
        assert [json.loads(e.value_json) for e in record.exports] == hello.exports["greetings"]
    assert cluster.flow_queues(*flow_ids) == []
