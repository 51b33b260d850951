"""A broker outage: executors and the scheduler wait it out and serve again.

Runs on a private RabbitMQ node (tests/private_broker.py), never the shared broker other
tests run on at the same time: a restart, and an outage whose application is stopped for
longer than the old give-up window (30 attempts) would allow at the test's short backoff
cap, then started again.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor.core.constants import ENV_RECONNECT_MAX_DELAY_S
from executor.core.errors import SchedulerDisconnected, redact_url
from executor.pb.dagyo.v1 import failure_pb2
from scheduler.pb.dagyo.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import slow_flow
from tests.private_broker import PrivateBroker, private_broker  # noqa: F401  (fixture)
from tests.waiting import eventually

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow

# At this cap 30 attempts take under 15 s of waiting; the outage lasts longer than the
# attempts the old code made in it (it counted to 30 and exited 3).
MAX_DELAY_S = "0.2"
OUTAGE_S = 8.0
NAMES = ("source", "slow", "count")
# Through an outage and the reconnections after it, on a loaded machine.
OUTAGE_WAIT_S = 60.0


@pytest.fixture
def cluster(
    private_broker: PrivateBroker,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalCluster]:
    monkeypatch.setenv(ENV_RECONNECT_MAX_DELAY_S, MAX_DELAY_S)  # the in-process scheduler
    cluster = LocalCluster(
        private_broker.url,
        tmp_path,
        names=NAMES,
        env={ENV_RECONNECT_MAX_DELAY_S: MAX_DELAY_S, "DAGYO_METRICS_PORT": "0"},
    )
    try:
        yield cluster.start()
    finally:
        cluster.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError as e:
        assert e.code == 503
        return False


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def test_executors_and_the_scheduler_outlive_a_long_outage(
    private_broker: PrivateBroker,  # noqa: F811
    cluster: LocalCluster,
) -> None:
    assert cluster.scheduler is not None
    address = cluster.scheduler.address
    ports = {name: cluster.health_port(name) for name in NAMES}
    assert all(ready(port) for port in ports.values())
    running = cluster.submit(slow_flow(1000, 20))
    wait_for_node(cluster, running, "w", OUTAGE_WAIT_S)
    with private_broker.outage(OUTAGE_S):
        eventually(
            lambda: not serving(address), OUTAGE_WAIT_S, what="the scheduler says it is not serving"
        )
        for name, port in ports.items():
            eventually(
                lambda port=port: not ready(port),
                OUTAGE_WAIT_S,
                what=f"executor {name} says not ready",
            )
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
            scheduler_pb2_grpc.SchedulerStub(channel).Submit(
                scheduler_pb2.SubmitRequest(flow_json=json.dumps(slow_flow(3, 1))), timeout=30
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(SchedulerDisconnected) as said:
            cluster.submit(slow_flow(3, 1))
        assert str(said.value) == (
            f"the scheduler is not connected to the broker at {redact_url(private_broker.url)} "
            "(it keeps reconnecting): submit the flow again once the broker is back"
        )
        counts = cluster.scheduler.store.count_by_state()
        assert sum(counts.values()) == 1, f"a Submit during the outage left a record: {counts}"

    for name, process in cluster.executors.items():
        assert process.poll() is None, f"executor {name} exited:\n{cluster.executor_log(name)}"
        # Past the 30 attempts after which executors used to exit 3.
        attempts = re.findall(r"reconnect attempt (\d+) failed", cluster.executor_log(name))
        assert max(map(int, attempts)) > 30, attempts[-3:]
    assert cluster.scheduler.failed is None
    eventually(lambda: serving(address), OUTAGE_WAIT_S, what="the scheduler serves again")
    for name, port in ports.items():
        eventually(
            lambda port=port: ready(port), OUTAGE_WAIT_S, what=f"executor {name} is ready again"
        )
        cluster.wait_for_consumer(name)

    record = cluster.wait(running)
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_BROKER
    record, exports = cluster.run(slow_flow(5, 1))
    assert state_of(record) == "succeeded", record
    assert exports["total"] == [{"value": "5"}]
    counts = {state.value: n for state, n in cluster.scheduler.store.count_by_state().items() if n}
    assert counts == {"failed": 1, "succeeded": 1}, counts
    for name, process in cluster.executors.items():
        assert process.poll() is None, f"executor {name} exited:\n{cluster.executor_log(name)}"


def test_a_broker_restart_fails_running_flows_and_the_cluster_recovers(
    private_broker: PrivateBroker,  # noqa: F811
    cluster: LocalCluster,
) -> None:
    flow_id = cluster.submit(slow_flow(1000, 20))
    wait_for_node(cluster, flow_id, "w")
    with private_broker.outage(0):
        pass
    record = cluster.wait(flow_id, timeout_s=60)
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_BROKER
    for name in NAMES:
        cluster.wait_for_consumer(name, timeout_s=60)
    record, exports = cluster.run(slow_flow(5, 1))
    assert state_of(record) == "succeeded" and exports["total"] == [{"value": "5"}]
    queues = private_broker.ctl("list_queues", "-q", "--no-table-headers", "name").split()
    assert [q for q in queues if flow_id in q or record.id in q] == []
