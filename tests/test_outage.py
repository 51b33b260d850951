"""A long broker outage: executors and the scheduler wait it out and serve again.

Runs on a private RabbitMQ node (tests/private_broker.py) whose application is stopped for
longer than the old give-up window (30 attempts) would allow at the test's short backoff
cap, then started again.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor.core.constants import ENV_RECONNECT_MAX_DELAY_S
from executor.core.errors import SchedulerDisconnected, redact_url
from executor.pb.dagyo.v1 import failure_pb2
from scheduler.pb.dagyo.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.cluster import LocalCluster, state_of
from tests.flows import slow_flow
from tests.private_broker import PrivateBroker, private_broker  # noqa: F401  (fixture)

# At this cap 30 attempts take under 15 s of waiting; the outage lasts longer than the
# attempts the old code made in it (it counted to 30 and exited 3).
MAX_DELAY_S = "0.2"
OUTAGE_S = 8.0
NAMES = ("source", "slow", "count")


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


def health_port(cluster: LocalCluster, name: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"health on port (\d+)", cluster.executor_log(name))
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"executor {name} never said its health port")


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


def eventually(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def test_executors_and_the_scheduler_outlive_a_long_outage(
    private_broker: PrivateBroker,  # noqa: F811
    cluster: LocalCluster,
) -> None:
    assert cluster.scheduler is not None
    address = cluster.scheduler.address
    ports = {name: health_port(cluster, name) for name in NAMES}
    assert all(ready(port) for port in ports.values())
    running = cluster.submit(slow_flow(1000, 20))
    eventually(
        lambda: any(
            n.node == "w" and n.state == scheduler_pb2.NODE_STATE_RUNNING
            for n in cluster.client().get(running).nodes
        ),
        "the slow flow's slow node started",
    )
    with private_broker.outage(OUTAGE_S):
        eventually(lambda: not serving(address), "the scheduler says it is not serving")
        for name, port in ports.items():
            eventually(lambda port=port: not ready(port), f"executor {name} says not ready")
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
    eventually(lambda: serving(address), "the scheduler serves again")
    for name, port in ports.items():
        eventually(lambda port=port: ready(port), f"executor {name} is ready again")
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
