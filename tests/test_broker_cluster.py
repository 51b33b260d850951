"""dagyo on a RabbitMQ cluster of three nodes (tests/broker_cluster.py) when one goes.

Every process gets the three nodes' URLs (DAGYO_QUEUE with ``;``), so its durable queues are
quorum queues. A lost node loses no waiting job; everyone reconnects to a live node within
seconds; a flow whose stream queues were on the lost node fails naming it, and nothing of an
ended flow is left on any node.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from executor.core.amqp import connect
from tests.broker_cluster import (  # noqa: F401
    CLUSTER_GROUP,
    BrokerCluster,
    broker_cluster,
    running_cluster,
)
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import CASES, same_exports, slow_flow
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(CLUSTER_GROUP)]

HELLO = next(case for case in CASES if case.id == "hello")
RECONNECT_S = 15.0
NAMES = ("source", "greet", "void_sink", "slow", "count")


def consumers(url: str, queue: str) -> int:
    connection = connect(url)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    finally:
        connection.close()


def test_jobs_waiting_in_a_mailbox_run_after_the_node_of_its_leader_stops(
    broker_cluster: BrokerCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with broker_cluster.vhost() as vhost:
        url = broker_cluster.url(vhost)
        cluster = LocalCluster(url, tmp_path, names=("source", "greet", "void_sink"))
        mailbox = cluster.catalogue["greet"].mailbox
        # The mailbox's leader on the second node, where no dagyo process is connected.
        connection = connect(broker_cluster.url(vhost, order=(1,)))
        try:
            arguments = {"x-queue-type": "quorum"}
            connection.channel().queue_declare(mailbox, durable=True, arguments=arguments)
        finally:
            connection.close()
        leaders = {row[0]: row[1] for row in broker_cluster.queues(vhost, "name", "leader")}
        assert leaders[mailbox] == broker_cluster.nodes[1].node
        cluster.start()
        try:
            greet = cluster.executors["greet"]
            os.kill(greet.pid, signal.SIGSTOP)  # jobs come and wait: nobody takes them
            try:
                flows = [cluster.submit(HELLO.flow) for _ in range(5)]
                eventually(
                    lambda: dict(broker_cluster.queues(vhost, "name", "messages")).get(mailbox),
                    until=lambda waiting: waiting == "5",
                    what="five jobs waiting in greet's mailbox",
                )
                broker_cluster.stop_node(1)
            finally:
                os.kill(greet.pid, signal.SIGCONT)
            try:
                for flow_id in flows:
                    record = cluster.wait(flow_id, 60)
                    assert state_of(record) == "succeeded", record
                    exports: dict[str, list[object]] = {}
                    for export in record.exports:
                        exports.setdefault(export.export, []).append(json.loads(export.value_json))
                    assert same_exports(HELLO, exports), exports
            finally:
                broker_cluster.start_node(1)
        finally:
            cluster.close()


def test_a_lost_node_fails_its_flows_naming_it_and_everyone_reconnects(
    broker_cluster: BrokerCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with broker_cluster.vhost() as vhost:
        url = broker_cluster.url(vhost)
        others = broker_cluster.url(vhost, order=(1, 2))
        cluster = LocalCluster(url, tmp_path, names=NAMES, heartbeat_timeout_s=6.0).start()
        lost = broker_cluster.address(0)
        try:
            record, _ = cluster.run(HELLO.flow)
            assert state_of(record) == "succeeded"
            # A node that holds none of their queues nor connections goes: they go on.
            untouched = [cluster.submit(slow_flow(60, 50)) for _ in range(3)]
            for flow_id in untouched:
                wait_for_node(cluster, flow_id, "w")
            broker_cluster.stop_node(2)
            try:
                for flow_id in untouched:
                    record = cluster.wait(flow_id, 60)
                    assert state_of(record) == "succeeded", record
            finally:
                broker_cluster.start_node(2)
            names = sorted(node.node for node in broker_cluster.nodes)
            eventually(lambda: broker_cluster.running() == names, 60, what="the node back")
            running = [cluster.submit(slow_flow(1000, 50)) for _ in range(3)]
            for flow_id in running:
                wait_for_node(cluster, flow_id, "w")
            stopped = time.monotonic()
            broker_cluster.stop_node(0)
            try:
                mailboxes = [progdef.mailbox for progdef in cluster.catalogue.values()]
                eventually(
                    lambda: all(consumers(others, mailbox) for mailbox in mailboxes),
                    RECONNECT_S,
                    what="every executor consuming its mailbox on another node",
                )
                reconnected_s = time.monotonic() - stopped
                assert reconnected_s < RECONNECT_S
                for flow_id in running:
                    record = cluster.wait(flow_id, 30)
                    assert state_of(record) == "failed", record
                    assert lost in record.failure.error, record.failure
                record, exports = cluster.run(HELLO.flow)
                assert state_of(record) == "succeeded", record
                assert same_exports(HELLO, exports), exports
            finally:
                broker_cluster.start_node(0)
            ended = [*untouched, *running, record.id]
            eventually(lambda: broker_cluster.running() == names, 60, what="the node back")
            for index in range(len(broker_cluster.nodes)):
                queues = [row[0] for row in broker_cluster.queues(vhost, "name", index=index)]
                left = [q for q in queues if any(f".{flow_id}." in q for flow_id in ended)]
                assert left == [], f"node {index} lists queues of ended flows: {left}"
        finally:
            cluster.close()


def test_a_node_stopped_under_twenty_flows_fails_those_on_it_and_no_other(
    broker_cluster: BrokerCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two schedulers, each on a vhost of its own: one connected to the first node (its flows'
    stream queues live there), the other to the second. The second node goes while ten flows
    of each run: the ten whose queues were on it fail naming it, the ten others succeed."""
    with broker_cluster.vhost() as kept_vhost, broker_cluster.vhost() as lost_vhost:
        names = ("source", "slow", "count")
        kept = LocalCluster(
            broker_cluster.url(kept_vhost, order=(0, 1, 2)), tmp_path / "kept", names=names
        )
        lost = LocalCluster(
            broker_cluster.url(lost_vhost, order=(1, 2, 0)),
            tmp_path / "lost",
            names=names,
            heartbeat_timeout_s=6.0,
        )
        try:
            kept.start()
            lost.start()
            flows = {
                cluster: [cluster.submit(slow_flow(120, 50)) for _ in range(10)]
                for cluster in (kept, lost)
            }
            for cluster, ids in flows.items():
                for flow_id in ids:
                    wait_for_node(cluster, flow_id, "w")
            broker_cluster.stop_node(1)
            try:
                for flow_id in flows[lost]:
                    record = lost.wait(flow_id, 60)
                    assert state_of(record) == "failed", record
                    assert broker_cluster.address(1) in record.failure.error, record.failure
                for flow_id in flows[kept]:
                    record = kept.wait(flow_id, 60)
                    assert state_of(record) == "succeeded", record
                    assert [json.loads(e.value_json) for e in record.exports] == [{"value": "120"}]
            finally:
                broker_cluster.start_node(1)
            nodes = sorted(node.node for node in broker_cluster.nodes)
            eventually(lambda: broker_cluster.running() == nodes, 60, what="the node back")
            for vhost, ended in ((kept_vhost, flows[kept]), (lost_vhost, flows[lost])):
                for index in range(len(broker_cluster.nodes)):
                    queues = [row[0] for row in broker_cluster.queues(vhost, "name", index=index)]
                    left = [q for q in queues if any(f".{flow_id}." in q for flow_id in ended)]
                    assert left == [], f"node {index} lists queues of ended flows: {left}"
        finally:
            lost.close()
            kept.close()


def test_a_second_user_in_the_same_process_shares_the_running_cluster(
    broker_cluster: BrokerCluster,  # noqa: F811
) -> None:
    # As the fixture imported into a second test module does: no wait for the file lock
    # this process holds, and the cluster still runs for the first user afterwards.
    with running_cluster() as again:
        assert again is broker_cluster
    assert broker_cluster.running() == sorted(node.node for node in broker_cluster.nodes)
