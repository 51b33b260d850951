"""Submit refuses, at once, a flow the running executors could never hold together, and a
flow whose progdef's last executor drained and said goodbye."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import grpc
import pika
import pika.exceptions
import pytest
from click.testing import CliRunner

from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_DEADLOCK, FAILURE_KIND_LOST
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.cli import cli
from scheduler.client.api import SchedulerRefused
from scheduler.constants import AUTOSCALER_FILE
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.config import SchedulerSettings
from tests.cluster import LocalCluster
from tests.conftest import queue_messages
from tests.scheduler.fake_executor import (
    EXPECTED,
    WAIT_S,
    Client,
    FakeExecutor,
    end_of,
    exports_of,
    mailboxes,
    run_to_success,
)
from tests.waiting import eventually

# Long enough that only a goodbye, not the heartbeat timeout, can explain a prompt refusal.
HEARTBEAT_TIMEOUT_S = 60.0


def _greets(n: int) -> dict[str, object]:
    nodes: dict[str, object] = {"names": {"progdef": "source"}}
    edges = []
    upstream = "names.src"
    for i in range(n):
        nodes[f"hi{i}"] = {"progdef": "greet"}
        edges.append({"from": upstream, "to": f"hi{i}.name"})
        upstream = f"hi{i}.greeting"
    return {
        "name": "greets",
        "nodes": nodes,
        "edges": edges,
        "consts": [{"to": "names.count", "values": [{"value": 3}]}],
        "exports": {"out": upstream},
    }


def _two_slots_of_greet(broker_url: str, tmp_path: Path) -> LocalCluster:
    """source and greet, each executor running two jobs at once."""
    return LocalCluster(
        broker_url,
        tmp_path,
        names=("source", "greet"),
        max_jobs=2,
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
    ).start()


def test_a_flow_with_more_jobs_of_a_progdef_than_its_slots_is_refused(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = _two_slots_of_greet(broker_url, tmp_path)
    try:
        with pytest.raises(SchedulerRefused) as refused:
            cluster.submit(_greets(3))
        assert "progdef greet: the flow has 3 jobs of it but its executors hold 2 at once" in str(
            refused.value
        )
        record, exports = cluster.run(_greets(2))
        assert len(exports["out"]) == 3
    finally:
        cluster.close()


def test_submit_is_refused_at_once_after_the_last_executor_drained(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        broker_url,
        tmp_path,
        names=("source", "greet"),
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
        drain_grace_s=1.0,
    ).start()
    try:
        cluster.run(_greets(1))
        greet = cluster.executors["greet"]
        greet.send_signal(signal.SIGTERM)
        assert greet.wait(timeout=30) == 0
        with pytest.raises(SchedulerRefused) as refused:
            cluster.submit(_greets(1))
        assert "progdef greet: no executor serves mailbox" in str(refused.value)
    finally:
        cluster.close()


def test_a_job_no_executor_took_leaves_its_mailbox_at_the_flow_deadline(
    settings: SchedulerSettings, catalogue: Path
) -> None:
    # Nothing serves the mailboxes: the jobs wait there until the flow's deadline.
    client = Client(dataclasses.replace(settings, require_consumers=False))
    try:
        flow_id = client.submit(deadline_s=1.0)
        eventually(
            lambda: client.get(flow_id).state == pb.FLOW_STATE_FAILED,
            WAIT_S,
            what="the flow failed at its deadline",
        )
        eventually(
            lambda: {m: _depth(settings.queue_url, m) for m in mailboxes(catalogue)},
            WAIT_S,
            until=lambda left: not any(left.values()),
            what="no job left in the mailboxes",
        )
    finally:
        client.close()


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        connection.close()


# --- gang admission: every job of a flow starts at once, or none is published -------------

CHAIN = {
    "name": "chain",
    "nodes": {"a": {"progdef": "emit"}, "b": {"progdef": "relay"}, "c": {"progdef": "relay"}},
    "edges": [{"from": "a.items", "to": "b.text"}, {"from": "b.text", "to": "c.text"}],
    "consts": [{"to": "a.n", "values": [{"value": 3}]}],
    "exports": {"out": "c.text"},
}


def _by_flow(fake: FakeExecutor, count: int) -> dict[str, dict[str, Job]]:
    jobs: dict[str, dict[str, Job]] = {}
    for _ in range(count):
        job = fake.jobs.get(timeout=WAIT_S)
        jobs.setdefault(job.flow_id, {})[job.node] = job
    return jobs


def test_a_flow_waits_pending_until_all_its_jobs_can_start(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    fake = FakeExecutor(broker_url, mailboxes(catalogue), slots=2).start()
    client = Client(settings)
    try:
        eventually(
            lambda: client.scheduler.lifecycle.liveness.slots(mailboxes(catalogue)[0]) == 2,
            what="the scheduler to hear the executor's slots",
        )
        first, second = client.submit(), client.submit()
        taken = _by_flow(fake, 4)
        jobs, later = taken[first], taken[second]
        third = client.submit()
        waiting = client.get(third)
        assert waiting.state == pb.FLOW_STATE_PENDING
        assert waiting.waiting == (
            "waiting for 1 slot of emit, 0 free; waiting for 1 slot of relay, 0 free"
        )
        assert all(n.state == pb.NODE_STATE_PENDING for n in waiting.nodes)
        status = CliRunner(env={"DAGYO_SCHEDULER": client.scheduler.address}).invoke(
            cli, ["flow", "status", third]
        )
        assert status.output.splitlines()[0] == (
            f"flow {third} (fake): pending (waiting for 1 slot of emit, 0 free; "
            "waiting for 1 slot of relay, 0 free)"
        )
        fourth = client.submit()
        cancelled = client.stub.Cancel(pb.CancelRequest(flow_id=fourth), timeout=WAIT_S)
        assert cancelled.state == pb.FLOW_STATE_CANCELLED
        # One admission pass run to its end here (its publishes are in the broker when it
        # returns): the waiting flows' jobs stay unpublished.
        client.scheduler.lifecycle.admitter.admit_waiting()
        assert client.get(third).state == pb.FLOW_STATE_PENDING
        assert not any(queue_messages(broker_url, m) for m in mailboxes(catalogue))
        assert fake.jobs.empty(), "a job of a flow that was not admitted was published"

        run_to_success(fake, jobs)
        assert end_of(client.watch(first)).state == pb.FLOW_STATE_SUCCEEDED
        third_jobs = _by_flow(fake, 2)[third]  # admitted once the first's slots are free
        assert client.get(third).waiting == ""
        run_to_success(fake, later)
        run_to_success(fake, third_jobs)
        for flow_id in (second, third):
            events = client.watch(flow_id)
            assert end_of(events).state == pb.FLOW_STATE_SUCCEEDED
            assert exports_of(events) == EXPECTED
        assert fake.jobs.empty(), "the cancelled flow's jobs were published"
    finally:
        client.close()
        fake.close()


def test_a_flow_an_autoscaler_could_never_hold_is_refused(
    settings: SchedulerSettings, catalogue: Path
) -> None:
    emit = catalogue / "emit"
    data = json.loads((emit / "progdef.json").read_text())
    data["scaling"] = {"max_jobs": 1, "max_executors": 1}
    (emit / "progdef.json").write_text(json.dumps(data))
    (emit / AUTOSCALER_FILE).write_text("keda\n")
    flow = {
        "name": "two-emits",
        "nodes": {"a": {"progdef": "emit"}, "z": {"progdef": "emit"}},
        "consts": [{"to": "a.n", "values": [3]}, {"to": "z.n", "values": [3]}],
        "exports": {"a": "a.items", "z": "z.items"},
    }
    client = Client(settings)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(flow)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (
            "progdef emit: the flow has 2 jobs of it but its autoscaler runs at most 1 at once "
            "(scaling.max_executors 1 × max_jobs 1)" in str(refused.value.details())
        )
    finally:
        client.close()


def test_a_waiting_flow_no_executor_will_ever_serve_fails_as_never_taken(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    client = Client(dataclasses.replace(settings, require_consumers=False, heartbeat_timeout_s=1.5))
    try:
        flow_id = client.submit()
        assert client.get(flow_id).waiting.startswith("waiting for 1 slot of emit, 0 free")
        record = end_of(client.watch(flow_id))
        assert record.state == pb.FLOW_STATE_FAILED
        assert record.failure.kind == FAILURE_KIND_LOST
        assert "was never taken: no executor pulls" in record.failure.error
        assert not any(_depth(broker_url, m) for m in mailboxes(catalogue))
    finally:
        client.close()


def test_a_flow_whose_started_jobs_all_wait_on_a_job_that_cannot_start_fails_as_deadlocked(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    # Its heartbeats give no slots, so admission cannot tell; the last line holds instead.
    fake = FakeExecutor(broker_url, mailboxes(catalogue)).start()
    client = Client(dataclasses.replace(settings, heartbeat_timeout_s=1.5))
    try:
        flow_id = client.submit(CHAIN)
        jobs = fake.next_jobs(3)
        for node in ("a", "b"):
            fake.start_job(jobs[node])
            fake.block(jobs[node])
        record = end_of(client.watch(flow_id))
        assert record.state == pb.FLOW_STATE_FAILED
        assert record.failure.kind == FAILURE_KIND_DEADLOCK
        assert record.failure.node == "c"
        assert record.failure.error.startswith(
            "deadlock: job c (progdef relay) never started while every started job (a, b) "
            "waits on a full stream"
        )
        assert fake.stop_for(flow_id).reason == record.failure.error
    finally:
        client.close()
        fake.close()


@pytest.mark.slow
def test_a_job_admitted_but_never_taken_expires_and_fails_its_flow(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    # The executor announces free slots but takes nothing (stuck): its jobs expire.
    fake = FakeExecutor(broker_url, mailboxes(catalogue), slots=2).start()
    fake._do(lambda channel: channel.stop_consuming())
    client = Client(dataclasses.replace(settings, heartbeat_timeout_s=0.8))
    try:
        eventually(
            lambda: client.scheduler.lifecycle.liveness.slots(mailboxes(catalogue)[0]) == 2,
            what="the scheduler to hear the executor's slots",
        )
        flow_id = client.submit()
        record = end_of(client.watch(flow_id))
        assert record.state == pb.FLOW_STATE_FAILED
        assert record.failure.kind == FAILURE_KIND_LOST
        assert "was not taken within 8 s of the flow's admission" in record.failure.error
        assert not any(_depth(broker_url, m) for m in mailboxes(catalogue))
    finally:
        client.close()
        fake.close()


def test_flows_that_need_every_slot_run_one_after_another_on_real_executors(
    broker_url: str, tmp_path: Path
) -> None:
    cluster = _two_slots_of_greet(broker_url, tmp_path)
    try:
        flows = [cluster.submit(_greets(2)) for _ in range(4)]
        for flow_id in flows:
            record = cluster.wait(flow_id)
            assert record.state == pb.FLOW_STATE_SUCCEEDED, record.failure.error
            assert record.waiting == ""
            assert [e.value_json for e in record.exports] == [
                f'{{"text":"hello hello {name}"}}' for name in ("name-0", "name-1", "name-2")
            ]
    finally:
        cluster.close()


def test_a_job_waiting_in_a_mailbox_that_has_a_consumer_is_not_called_never_taken(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    # A consumer that sends no heartbeat naming the mailbox (late, under load, or another
    # implementation) and holds one job at a time: the other waits, and is pulled.
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    for mailbox in mailboxes(catalogue):
        channel.queue_declare(mailbox, durable=True)
        channel.basic_consume(mailbox, lambda *_: None)  # takes one, never acks
    client = Client(dataclasses.replace(settings, require_consumers=False, heartbeat_timeout_s=1.0))
    try:
        flows = [client.submit(), client.submit()]
        eventually(
            lambda: all(_depth(broker_url, m) == 1 for m in mailboxes(catalogue)),
            what="one job of each progdef to wait in its mailbox",
        )
        connection.sleep(4.0)  # four heartbeat timeouts pass, then the watchdog looks
        client.scheduler.lifecycle.tick()
        records = [client.get(f) for f in flows]
        assert [r.state for r in records] == [pb.FLOW_STATE_RUNNING] * 2, [
            r.failure.error for r in records
        ]
        for flow_id in flows:
            client.stub.Cancel(pb.CancelRequest(flow_id=flow_id), timeout=WAIT_S)
    finally:
        client.close()
        for mailbox in mailboxes(catalogue):
            channel.queue_delete(mailbox)
        connection.close()
