"""A broker memory alarm never leaves a flow running for ever: a job whose broker call went
unanswered under the alarm is reported, with its reason, once the broker takes
publishes again, and the flow fails naming it.

On a private RabbitMQ node (tests/private_broker.py) with a node name and ports of this
module's own, since the alarm blocks every publishing connection of the node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.pb.dagyo.v1 import failure_pb2
from scheduler.pb.dagyo.v1 import scheduler_pb2
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import slow_flow
from tests.private_broker import PrivateBroker, start_private_broker, stop_private_broker

# It waits out a 35 s alarm on a node of its own: started first under xdist.
pytestmark = pytest.mark.slow

# Longer than an executor waits for one broker call (30 s): the call goes unanswered.
ALARM_S = 35.0


@pytest.fixture(scope="module")
def alarm_broker() -> Iterator[PrivateBroker]:
    broker = start_private_broker(
        "dagyo-alarm-", node="dagyo-wire@localhost", amqp_port=5692, dist_port=25692
    )
    try:
        yield broker
    finally:
        stop_private_broker(broker)


def test_a_job_failed_by_a_broker_alarm_is_reported_and_its_flow_ends(
    alarm_broker: PrivateBroker, tmp_path: Path
) -> None:
    # A heartbeat timeout longer than the alarm: the end must come from the job's report,
    # not from the executors' silence while the alarm blocks their heartbeats.
    cluster = LocalCluster(
        alarm_broker.url, tmp_path, names=("source", "slow", "count"), heartbeat_timeout_s=600.0
    ).start()
    try:
        flow_id = cluster.submit(slow_flow(2000, 50))
        wait_for_node(cluster, flow_id, "w")
        alarm_broker.ctl("set_vm_memory_high_watermark", "0.00001")
        try:
            time.sleep(ALARM_S)  # the alarm's length is the fault injected, not a wait
        finally:
            alarm_broker.ctl("set_vm_memory_high_watermark", "0.4")
        record = cluster.wait(flow_id, timeout_s=90)
    finally:
        cluster.close()
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_BROKER, record.failure.error
    assert "the broker did not answer within 30" in record.failure.error
    running = [n.node for n in record.nodes if n.state == scheduler_pb2.NODE_STATE_RUNNING]
    assert running == []
