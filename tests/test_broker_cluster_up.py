"""`dagyo up` on a RabbitMQ cluster of three nodes (tests/broker_cluster.py), as a user runs it.

DAGYO_QUEUE lists the three nodes' URLs. Every example flow that needs nothing outside the
repository runs and ends as it does embedded; then each node in turn is stopped, and a new
flow succeeds within 15 s of the stop, the cluster still whole for the next.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from executor.core.errors import SchedulerDisconnected
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2
from tests.broker_cluster import CLUSTER_GROUP, BrokerCluster, broker_cluster  # noqa: F401
from tests.commands import dagyo_up, free_address, run_dagyo
from tests.conftest import EXAMPLES, ROOT
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(CLUSTER_GROUP)]

USABLE_S = 15.0
# How each example ends (`flow submit --wait`'s exit status): boom panics on purpose.
ENDS = {"boom.json": 1}
HELLO = (EXAMPLES / "hello.json").read_text()
# What mixed.json exports (`dagyo run` cannot run its node progdef to compare with).
MIXED = [
    *({"export": "shouted", "value": {"text": f"NAME-{i}"}} for i in range(3)),
    {"export": "total", "value": {"value": "3"}},
]


def exports_of(stdout: str) -> list[str]:
    """The export lines a flow printed, in a stable order (exports of several names may
    interleave), without the time an error item was made."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        line["value"].pop("time", None)
    return sorted(json.dumps(line, sort_keys=True) for line in lines)


def ended(record: scheduler_pb2.FlowRecord) -> bool:
    return record.state in (scheduler_pb2.FLOW_STATE_SUCCEEDED, scheduler_pb2.FLOW_STATE_FAILED)


def first_success_after(address: str) -> str:
    """Submits hello flows one after another until one succeeds; returns its id."""
    deadline = time.monotonic() + 60
    with SchedulerClient(address) as client:
        while time.monotonic() < deadline:
            try:
                flow_id = client.submit(HELLO, source="hello.json")
            except SchedulerDisconnected:  # it is reconnecting: a user submits again
                time.sleep(0.2)
                continue
            record = eventually(
                functools.partial(client.get, flow_id),
                60,
                until=ended,
                what=f"the end of flow {flow_id}",
            )
            if record.state == scheduler_pb2.FLOW_STATE_SUCCEEDED:
                return flow_id
    raise AssertionError("no hello flow succeeded within 60 s")


def test_up_on_three_nodes_runs_the_examples_and_outlives_any_one_node(
    broker_cluster: BrokerCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    examples = sorted(EXAMPLES.glob("*.json"))
    expected = {"mixed.json": sorted(json.dumps(line, sort_keys=True) for line in MIXED)}
    embedded = [path for path in examples if path.name not in expected]
    with ThreadPoolExecutor(len(embedded)) as pool:  # one process each, side by side
        runs = pool.map(
            lambda path: run_dagyo(
                "run", str(path), env={"DAGYO_PROGDEFS": str(ROOT / "progdefs")}
            ),
            embedded,
        )
        for path, ran in zip(embedded, runs, strict=True):
            assert ran.returncode == ENDS.get(path.name, 0), (path, ran.stderr)
            expected[path.name] = exports_of(ran.stdout)
    names = sorted(node.node for node in broker_cluster.nodes)
    with broker_cluster.vhost() as vhost:
        address = free_address("127.0.0.1")
        env = {
            **os.environ,
            "DAGYO_QUEUE": broker_cluster.url(vhost),
            "DAGYO_STATE": str(tmp_path / "state.sqlite3"),
            "DAGYO_SCHEDULER": address,
            "DAGYO_PROGDEFS": str(ROOT / "progdefs"),
            "DAGYO_UI": "off",
            "PYTHONPATH": str(ROOT),
        }
        with dagyo_up("--listen", address, "--heartbeat-timeout", "6", env=env) as up:
            with ThreadPoolExecutor(len(examples)) as pool:
                submits = pool.map(
                    lambda path: run_dagyo("flow", "submit", str(path), "--wait", env=env),
                    examples,
                )
                for path, submitted in zip(examples, submits, strict=True):
                    assert submitted.returncode == ENDS.get(path.name, 0), (path, submitted.stderr)
                    assert exports_of(submitted.stdout) == expected[path.name]
            for index in range(len(broker_cluster.nodes)):
                stopped = time.monotonic()
                broker_cluster.stop_node(index)
                try:
                    first_success_after(address)
                    usable_s = time.monotonic() - stopped
                    print(f"node {index} stopped: a new flow succeeded {usable_s:.1f} s later")
                    assert usable_s < USABLE_S, f"node {index} stopped: {usable_s:.1f} s"
                finally:
                    broker_cluster.start_node(index)
                eventually(lambda: broker_cluster.running() == names, 60, what="the node back")
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
