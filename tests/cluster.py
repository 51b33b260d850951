"""A local cluster for tests: the scheduler in this process, executors as processes.

Each cluster copies the sample catalogue with a unique version (a VERSION file), so its
mailboxes are its own, and deletes them when it closes.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from executor.core.amqp import connect
from executor.core.tracing import Tracing
from scheduler.client.api import SchedulerClient
from scheduler.local_cluster import LocalCluster as RealLocalCluster
from scheduler.local_cluster import private_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2
from scheduler.service.server import Scheduler
from tests.conftest import PROGDEFS, ROOT, queue_messages, rabbitmqctl, vhost_of
from tests.waiting import eventually

ALL_PROGDEFS = (
    "source",
    "greet",
    "void_sink",
    "count",
    "unordered_cartesian_product",
    "explode",
    "slow",
)
DONE_STATES = {"FLOW_STATE_SUCCEEDED", "FLOW_STATE_FAILED", "FLOW_STATE_CANCELLED"}


def copy_catalogue(target: Path, names: tuple[str, ...] = ALL_PROGDEFS) -> Path:
    """Copy progdefs with a fresh version each, so their mailboxes are unique."""
    return private_catalogue(PROGDEFS, target, names, tag="test")


class LocalCluster:
    """The scheduler (in-process) and one executor process per progdef.

    Built on scheduler.local_cluster.LocalCluster (``dagyo up``): this adds the knobs tests
    turn (fast heartbeats, a short drain, no health ports) and a name -> process view.
    ``custom``: a folder of the test's own progdefs, served beside the samples ``names``.
    """

    def __init__(
        self,
        amqp_url: str,
        workdir: Path,
        *,
        names: tuple[str, ...] = ALL_PROGDEFS,
        heartbeat_timeout_s: float = 4.0,
        heartbeat_interval_s: float = 0.5,
        drain_grace_s: float = 20.0,
        max_jobs: int | None = None,
        env: dict[str, str] | None = None,
        custom: Path | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.catalogue_dir = copy_catalogue(workdir / "progdefs", names)
        if custom is not None:  # a test's own progdefs, beside the samples named
            folders = sorted(p.name for p in custom.iterdir() if (p / "progdef.json").is_file())
            private_catalogue(custom, self.catalogue_dir, folders, tag="test")
        knobs = {
            "DAGYO_METRICS_PORT": "-1",
            "DAGYO_HEARTBEAT_INTERVAL_S": str(heartbeat_interval_s),
            "DAGYO_DRAIN_GRACE_S": str(drain_grace_s),
            "PYTHONPATH": str(ROOT),
            **({"DAGYO_MAX_JOBS": str(max_jobs)} if max_jobs is not None else {}),
            **(env or {}),
        }
        self.local = RealLocalCluster(
            progdefs_dir=self.catalogue_dir,
            queue_url=amqp_url,
            heartbeat_timeout_s=heartbeat_timeout_s,
            state_path=str(workdir / "scheduler.sqlite3"),
            extra_env=knobs,
            log_dir=workdir,
        )
        self.catalogue = self.local.catalogue
        self.executors: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def scheduler(self) -> Scheduler | None:
        return self.local.scheduler

    # --- parts -----------------------------------------------------------------------------

    def start(self, *, tracing: Tracing | None = None) -> LocalCluster:
        for name in self.catalogue:
            self.start_executor(name)
        self.local.start_scheduler(tracing=tracing)
        for name in self.catalogue:
            self.wait_for_consumer(name)
        return self

    def start_scheduler(self) -> None:
        self.local.start_scheduler()

    def stop_scheduler(self) -> None:
        self.local.stop_scheduler()

    def start_executor(self, name: str) -> subprocess.Popen[bytes]:
        process = self.local.start_executor(self.catalogue[name])
        self.executors[name] = process
        return process

    def executor_log(self, name: str) -> str:
        return self.local.executor_log(name)

    def health_port(self, name: str) -> int:
        """The port of an executor's health and metrics, from its ready line."""
        found = eventually(
            lambda: re.search(r"health on port (\d+)", self.executor_log(name)),
            what=lambda: f"executor {name} saying its health port:\n{self.executor_log(name)}",
        )
        return int(found.group(1))

    def wait_for_consumer(self, name: str, timeout_s: float = 30.0) -> None:
        mailbox = self.catalogue[name].mailbox

        def consumed() -> bool:
            process = self.executors.get(name)
            if process is not None and process.poll() is not None:
                raise AssertionError(f"executor {name} exited:\n{self.executor_log(name)}")
            return bool(self.queue_consumers(mailbox))

        eventually(consumed, timeout_s, what=f"an executor consuming {mailbox}")

    def close(self) -> None:
        self.local.stop()
        self.local.delete_mailboxes()

    # --- the broker ------------------------------------------------------------------------

    def channel(self) -> _Channel:
        return _Channel(self.amqp_url)

    def queue_consumers(self, queue: str) -> int:
        """Consumers of a queue (0 when it does not exist)."""
        with self.channel() as channel:
            try:
                return channel.queue_declare(queue, passive=True).method.consumer_count
            except pika.exceptions.ChannelClosedByBroker:
                return 0

    def messages(self, queue: str) -> int:
        """Messages in a queue, waiting or delivered and not yet acked (0 when it is gone)."""
        return queue_messages(self.amqp_url, queue)

    def flow_queues(self, *flow_ids: str) -> list[str]:
        """Every queue of the broker whose name belongs to one of the flows."""
        output = rabbitmqctl(
            "list_queues", "-p", vhost_of(self.amqp_url), "-q", "--no-table-headers", "name"
        )
        prefixes = tuple(f"dagyo.flow.{flow_id}." for flow_id in flow_ids)
        return [q for q in output.split() if q.startswith(prefixes)]

    # --- flows -----------------------------------------------------------------------------

    def client(self) -> SchedulerClient:
        assert self.scheduler is not None
        return SchedulerClient(self.scheduler.address)

    def submit(self, flow: dict[str, Any], **kwargs: Any) -> str:
        with self.client() as client:
            return client.submit(json.dumps(flow), source=f"{flow.get('name')}.json", **kwargs)

    def wait(self, flow_id: str, timeout_s: float = 60.0) -> Any:
        """Wait for the flow's end; return its record."""
        with self.client() as client:
            return eventually(
                lambda: client.get(flow_id),
                timeout_s,
                until=lambda record: _state(record) in DONE_STATES,
                what=f"the end of flow {flow_id}",
            )

    def run(
        self, flow: dict[str, Any], timeout_s: float = 60.0
    ) -> tuple[Any, dict[str, list[Any]]]:
        """Submit, wait, and return (record, exports by name as JSON values)."""
        record = self.wait(self.submit(flow), timeout_s)
        exports: dict[str, list[Any]] = defaultdict(list)
        for export in record.exports:
            exports[export.export].append(json.loads(export.value_json))
        return record, dict(exports)


def _state(record: Any) -> str:
    from scheduler.pb.dagyo.v1 import scheduler_pb2

    return scheduler_pb2.FlowState.Name(record.state)


def state_of(record: Any) -> str:
    """``succeeded``, ``failed``, … for a FlowRecord."""
    return _state(record).removeprefix("FLOW_STATE_").lower()


class _Channel:
    def __init__(self, url: str) -> None:
        self._connection = connect(url)  # one URL, or a cluster's URLs separated by ;

    def __enter__(self) -> Any:
        return self._connection.channel()

    def __exit__(self, *exc: object) -> None:
        self._connection.close()


def wait_for_node(cluster: LocalCluster, flow_id: str, node: str, timeout_s: float = 30) -> Any:
    """Wait until a node's job has started; return the flow record."""

    def running(record: Any) -> bool:
        return any(
            progress.node == node and progress.state == scheduler_pb2.NODE_STATE_RUNNING
            for progress in record.nodes
        )

    with cluster.client() as client:
        return eventually(
            lambda: client.get(flow_id),
            timeout_s,
            until=running,
            what=f"node {node} of flow {flow_id} started",
        )


@contextlib.contextmanager
def own_vhost(amqp_url: str) -> Iterator[str]:
    """``amqp_url`` on a fresh vhost of its own (rabbitmqctl), deleted afterwards: for a test
    that asserts what is left in the broker."""
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = f"dagyo-own-{uuid.uuid4().hex[:8]}"
    for attempt in range(3):  # rabbitmqctl runs of other tests may collide with this one
        try:
            rabbitmqctl("add_vhost", vhost)
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
    try:
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        yield urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, "")))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def broker_leftovers(url: str) -> tuple[list[str], list[str]]:
    """The queues and the exchanges (but the broker's own) in the vhost of ``url``."""
    vhost = vhost_of(url)
    listed = []
    for kind in ("list_queues", "list_exchanges"):
        out = rabbitmqctl(kind, "-p", vhost, "name", "--quiet", "--no-table-headers")
        names = [line.strip() for line in out.splitlines() if line.strip()]
        listed.append(sorted(n for n in names if not n.startswith("amq.")))
    return listed[0], listed[1]
