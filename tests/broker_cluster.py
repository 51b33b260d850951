"""A RabbitMQ cluster of three private nodes on loopback, for the tests of a lost node.

Nodes ``dagyo-c1@localhost`` … ``dagyo-c3@localhost`` listen for AMQP on 5701–5703 and for
Erlang distribution on 25701–25703, each with its own data and logs (tests/private_broker.py
starts each; the server runs as the ``rabbitmq`` user, whose home holds the Erlang cookie
every node shares). The second and third join the first (``rabbitmqctl join_cluster``).

The cluster is started once per test run (the session-scoped ``broker_cluster`` fixture).
Under pytest-xdist each worker has its own session: a file lock held from start to stop
makes a second worker that needs the cluster wait for the first one's to be stopped, and the
tests that use it share one ``xdist_group`` (``CLUSTER_GROUP``) so one worker runs them all.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.private_broker import PrivateBroker, start_private_broker, stop_private_broker
from tests.waiting import eventually

NODES = 3
FIRST_AMQP_PORT = 5701
FIRST_DIST_PORT = 25701
CLUSTER_GROUP = "broker-cluster"
LOCK = Path(tempfile.gettempdir()) / "dagyo-broker-cluster.lock"


class BrokerCluster:
    """Three clustered nodes (see the module's docstring)."""

    def __init__(self, nodes: list[PrivateBroker]) -> None:
        self.nodes = nodes

    def url(self, vhost: str = "/", *, order: tuple[int, ...] | None = None) -> str:
        """DAGYO_QUEUE for the cluster: every node's URL, in ``order`` (indexes) or 0, 1, 2."""
        quoted = vhost.replace("/", "%2F")
        indexes = order if order is not None else tuple(range(len(self.nodes)))
        return ";".join(self.nodes[i].url.rsplit("/", 1)[0] + "/" + quoted for i in indexes)

    def address(self, index: int) -> str:
        """``host:port`` of a node's AMQP listener: what dagyo names a broker node by."""
        return self.nodes[index].url.split("@", 1)[1].rsplit("/", 1)[0]

    def index_of(self, erlang_node: str) -> int:
        """The index of the node named ``dagyo-cN@localhost``."""
        return [node.node for node in self.nodes].index(erlang_node)

    def ctl(self, *args: str, index: int | None = None) -> str:
        """rabbitmqctl against a running node (the first running one unless ``index``)."""
        nodes = [self.nodes[index]] if index is not None else self.nodes
        error: Exception | None = None
        for node in nodes:
            try:
                return node.ctl(*args)
            except subprocess.SubprocessError as e:
                error = e
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed on every node: {error}")

    def running(self) -> list[str]:
        """The Erlang names of the nodes whose broker runs."""
        status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])

    def stop_node(self, index: int) -> None:
        """Node ``index`` goes away: its connections drop, its port refuses new ones."""
        self.nodes[index].stop_app()

    def start_node(self, index: int) -> None:
        """Node ``index`` comes back and rejoins."""
        self.nodes[index].start_app()

    @contextmanager
    def vhost(self) -> Iterator[str]:
        """A fresh vhost on the cluster, deleted afterwards; yields its name."""
        name = f"dagyo-cluster-{os.urandom(4).hex()}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        try:
            yield name
        finally:
            self.ctl("delete_vhost", name)

    def queues(self, vhost: str, *columns: str, index: int | None = None) -> list[list[str]]:
        """``rabbitmqctl list_queues`` of a vhost, asked of node ``index`` (else the first
        running one): one row of ``columns`` per queue."""
        out = self.ctl(
            "list_queues", "-p", vhost, "-q", "--no-table-headers", *columns, index=index
        )
        return [line.split() for line in out.splitlines() if line.strip()]


def start_cluster() -> BrokerCluster:
    """Start three nodes and cluster them; fails the test (with a node's log) when they
    cannot start."""
    nodes: list[PrivateBroker] = []
    try:
        for index in range(NODES):
            nodes.append(
                start_private_broker(
                    f"dagyo-c{index + 1}-",
                    node=f"dagyo-c{index + 1}@localhost",
                    amqp_port=FIRST_AMQP_PORT + index,
                    dist_port=FIRST_DIST_PORT + index,
                )
            )
        first = nodes[0].node
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first)
            node.start_app()
        cluster = BrokerCluster(nodes)
        names = sorted(node.node for node in nodes)
        eventually(lambda: cluster.running() == names, 60, what=f"nodes {names} clustered")
        return cluster
    except BaseException:
        for node in nodes:
            stop_private_broker(node)
        raise


def stop_cluster(cluster: BrokerCluster) -> None:
    """Stop every node and delete its files."""
    for node in reversed(cluster.nodes):
        stop_private_broker(node)


# The cluster this process runs, with its lock and how many users it has: a second user in
# the same process (the fixture imported into two test modules is two fixtures) shares it,
# where the file lock would have it wait for itself for ever. The last one stops it.
_RUNNING: dict[str, Any] = {}


@contextmanager
def running_cluster() -> Iterator[BrokerCluster]:
    """The cluster, started once no other process runs one (the file lock), and stopped
    when its last user in this process is done."""
    if not _RUNNING:
        if not shutil.which("rabbitmq-server"):
            pytest.fail("these tests need rabbitmq-server installed (they start three nodes)")
        lock = open(LOCK, "w")  # noqa: SIM115 (held until the last user is done)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _RUNNING.update(cluster=start_cluster(), lock=lock, users=0)
        except BaseException:
            lock.close()
            raise
    _RUNNING["users"] += 1
    try:
        yield _RUNNING["cluster"]
    finally:
        _RUNNING["users"] -= 1
        if _RUNNING["users"] == 0:
            cluster, lock = _RUNNING.pop("cluster"), _RUNNING.pop("lock")
            _RUNNING.clear()
            try:
                stop_cluster(cluster)
            finally:
                lock.close()  # and with it the file lock


@pytest.fixture(scope="session")
def broker_cluster() -> Iterator[BrokerCluster]:
    """The cluster of three nodes, started once per run (see the module's docstring)."""
    with running_cluster() as cluster:
        yield cluster
