"""The scheduler under faults: lost executors, deadlines, restarts, lost queues and connections.

The fixtures are in conftest.py, the fake executor in fake_executor.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.parse
from pathlib import Path

import grpc
import pika
import pytest

from executor.core.errors import BrokerUnavailable
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_DEADLINE,
    FAILURE_KIND_LOST,
    FAILURE_KIND_PANIC,
)
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.config import SchedulerSettings
from scheduler.service.limits import export_bytes
from scheduler.service.server import Scheduler
from tests.scheduler.fake_executor import (
    EXPECTED,
    WAIT_S,
    Client,
    FakeExecutor,
    assert_no_queue_left,
    connections,
    end_of,
    exports_of,
    mailboxes,
    queue_exists,
    run_to_success,
    texts,
)
from tests.waiting import eventually


def test_a_silent_executor_fails_its_flow_as_lost(
    settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    client = Client(dataclasses.replace(settings, heartbeat_timeout_s=1.5))
    try:
        flow_id = client.submit()
        jobs = fake.next_jobs(2)
        fake.start_job(jobs["a"])
        watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
        fake.heartbeating = False
        end = end_of(list(watch))
    finally:
        client.close()
    assert end.state == pb.FLOW_STATE_FAILED
    failure = end.failure
    assert (failure.kind, failure.node, failure.progdef, failure.executor) == (
        FAILURE_KIND_LOST,
        "a",
        "emit",
        fake.id,
    )
    assert "sent no heartbeat" in failure.error and "timeout 1.5 s" in failure.error
    fake.stop_for(flow_id)
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_a_flow_past_its_deadline_fails(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit(deadline_s=1.0)
    jobs = fake.next_jobs(2)
    assert {job.deadline for job in jobs.values()} != {0.0}
    fake.start_job(jobs["a"])
    end = end_of(client.watch(flow_id))
    assert end.state == pb.FLOW_STATE_FAILED
    assert end.failure.kind == FAILURE_KIND_DEADLINE
    assert end.failure.error == "the flow passed its deadline of 1 s"
    fake.stop_for(flow_id)
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_a_flow_runs_across_a_scheduler_restart(
    settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    first = Client(settings)
    try:
        flow_id = first.submit()
        jobs = fake.next_jobs(2)
        for job in jobs.values():
            fake.start_job(job)
        fake.send(jobs["b"], "text", texts("x0", "x1"), seq=0)
        eventually(lambda: len(first.get(flow_id).exports) == 2, what="two kept exports")
    finally:
        first.close()

    second = Client(settings)
    try:
        record = second.get(flow_id)
        assert record.state == pb.FLOW_STATE_RUNNING
        assert {n.node: n.state for n in record.nodes} == {
            "a": pb.NODE_STATE_RUNNING,
            "b": pb.NODE_STATE_RUNNING,
        }
        watch = second.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
        fake.send(jobs["b"], "text", texts("x0", "x1"), seq=0)  # as if redelivered: skipped
        fake.send(jobs["a"], "items", texts("x0", "x1", "x2"), seq=0, end=True)
        fake.end_job(jobs["a"], {"items": 3})
        fake.send(jobs["b"], "text", texts("x2"), seq=1, end=True)
        fake.end_job(jobs["b"], {"text": 3})
        events = list(watch)
        assert end_of(events).state == pb.FLOW_STATE_SUCCEEDED
        assert exports_of(events) == EXPECTED
        assert [json.loads(e.value_json) for e in second.get(flow_id).exports] == [
            value for _, value in EXPECTED
        ]
    finally:
        second.close()
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_exports_past_the_cap_are_streamed_but_not_kept(
    settings: SchedulerSettings, fake: FakeExecutor
) -> None:
    one = export_bytes("out", '{"text":"x0"}')
    client = Client(dataclasses.replace(settings, export_cap_bytes=2 * one))
    try:
        flow_id = client.submit()
        watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
        run_to_success(fake, fake.next_jobs(2))
        events = list(watch)
        record = client.get(flow_id)
    finally:
        client.close()
    assert exports_of(events) == EXPECTED
    assert end_of(events).exports_truncated
    assert record.exports_truncated
    assert [json.loads(e.value_json)["text"] for e in record.exports] == ["x0", "x1"]


def test_an_undecodable_export_panics_the_flow(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["b"])
    fake.send(jobs["b"], "text", [b"\xff\xff"], seq=0)
    end = end_of(client.watch(flow_id))
    assert end.state == pb.FLOW_STATE_FAILED
    assert (end.failure.kind, end.failure.node, end.failure.progdef) == (
        FAILURE_KIND_PANIC,
        "b",
        "relay",
    )
    assert end.failure.error.startswith(
        "export out (from b.text): item 0 of a frame does not decode as dagyo.types.Text"
    )
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_a_queue_deleted_under_a_flow_fails_it(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    export_queue = jobs["b"].outputs["text"].queues[0]
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_delete(export_queue)
    connection.close()
    end = end_of(client.watch(flow_id))
    assert end.state == pb.FLOW_STATE_FAILED
    assert end.failure.kind == FAILURE_KIND_BROKER
    assert export_queue in end.failure.error
    assert_no_queue_left(broker_url, list(jobs.values()))


def _vhost(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path[1:])


@pytest.mark.slow
def test_after_a_lost_connection_flows_resume_or_fail_cleanly(
    settings: SchedulerSettings, fake: FakeExecutor, broker_url: str
) -> None:
    vhost = _vhost(broker_url)
    if not vhost.startswith("dagyo-test-"):
        pytest.fail("this test needs rabbitmqctl and a vhost of its own (see broker_url)")
    before = connections(vhost)
    client = Client(settings)
    try:
        scheduler_connections = connections(vhost) - before
        assert len(scheduler_connections) == 1
        survivor = client.submit()
        survivor_jobs = fake.next_jobs(2)
        doomed = client.submit()
        doomed_jobs = fake.next_jobs(2)
        # The broker forgets one of doomed's queues while the scheduler is away.
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        connection.channel().queue_delete(doomed_jobs["b"].inputs["text"].queue)
        connection.close()
        for pid in scheduler_connections:
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test: broker went away"],
                check=True,
                capture_output=True,
                timeout=60,
            )
        eventually(lambda: client.get(doomed).state == pb.FLOW_STATE_FAILED, what="doomed to fail")
        record = client.get(doomed)
        assert record.failure.kind == FAILURE_KIND_BROKER
        assert "queues are gone" in record.failure.error
        assert_no_queue_left(broker_url, list(doomed_jobs.values()))

        watch = client.stub.Watch(pb.WatchRequest(flow_id=survivor), timeout=WAIT_S)
        run_to_success(fake, survivor_jobs)
        events = list(watch)
        assert end_of(events).state == pb.FLOW_STATE_SUCCEEDED
        assert exports_of(events) == EXPECTED
    finally:
        client.close()
    assert_no_queue_left(broker_url, list(survivor_jobs.values()))


def test_health_and_reflection(client: Client) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "dagyo.v1.Scheduler"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT_S)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answer = next(iter(reflection.ServerReflectionInfo(iter([request]), timeout=WAIT_S)))
    services = {s.name for s in answer.list_services_response.service}
    assert {"dagyo.v1.Scheduler", "grpc.health.v1.Health"} <= services


def test_an_unreachable_broker_is_named(settings: SchedulerSettings) -> None:
    url = "amqp://guest:secret@localhost:1/%2F"
    with pytest.raises(BrokerUnavailable) as caught:
        Scheduler(dataclasses.replace(settings, queue_url=url)).start()
    assert "localhost:1" in str(caught.value) and "secret" not in str(caught.value)


def test_a_taken_address_is_named(client: Client, settings: SchedulerSettings) -> None:
    from executor.core.errors import DagyoError

    with pytest.raises(DagyoError, match=f"cannot listen on {client.scheduler.address}"):
        Scheduler(dataclasses.replace(settings, address=client.scheduler.address)).start()


def test_grpc_errors_reach_the_client_as_status_codes(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit({"name": "x", "nodes": {}}, deadline_s=-1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_events_queue_deleted_under_the_scheduler_comes_back(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    from executor.core.constants import shard_events_queue

    events_queue = shard_events_queue("0")

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_delete(events_queue)
    connection.close()
    eventually(lambda: queue_exists(broker_url, events_queue), what="the events queue redeclared")
    flow_id = client.submit()
    watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
    run_to_success(fake, fake.next_jobs(2))
    events = list(watch)
    assert end_of(events).state == pb.FLOW_STATE_SUCCEEDED


def test_a_refused_declare_fails_the_submit_and_the_scheduler_carries_on(
    settings: SchedulerSettings, catalogue: Path, broker_url: str
) -> None:
    emit, relay = mailboxes(catalogue)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    # A mailbox declared with other arguments: the scheduler's own declare is refused, and
    # the broker closes the scheduler's channel with every consumer on it.
    channel.queue_declare(emit, durable=True, arguments={"x-max-length": 5})
    client = Client(dataclasses.replace(settings, require_consumers=False))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            client.submit()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "PRECONDITION_FAILED" in caught.value.details()
        [failed] = client.stub.List(pb.ListRequest(), timeout=WAIT_S).flows
        eventually(lambda: client.get(failed.id).state == pb.FLOW_STATE_FAILED, what="the failure")
        assert client.get(failed.id).failure.kind == FAILURE_KIND_BROKER
        channel.queue_delete(emit)
        channel.queue_delete(relay)
        fake = FakeExecutor(broker_url, [emit, relay]).start()
        try:
            flow_id = client.submit()
            watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
            jobs = fake.next_jobs(2)
            run_to_success(fake, jobs)
            assert end_of(list(watch)).state == pb.FLOW_STATE_SUCCEEDED
        finally:
            fake.close()
    finally:
        client.close()
        connection.close()
    assert_no_queue_left(broker_url, list(jobs.values()))


@pytest.mark.slow
def test_deletes_the_broker_refused_are_sent_again_and_the_flow_then_ends(
    client: Client, fake: FakeExecutor, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    stream = jobs["b"].inputs["text"].queue
    # Someone holds the flow's stream queue as an exclusive one of their own connection:
    # the broker refuses the scheduler's delete of it (RESOURCE_LOCKED), which closes the
    # channel it went on, and the deletes behind it on that channel are never answered.
    holder = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = holder.channel()
        channel.queue_delete(stream)
        channel.queue_declare(stream, exclusive=True)
        watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
        run_to_success(fake, jobs)
        again = f"flow {flow_id}: its queues' deletes got no answer; sending them again"
        eventually(lambda: again in caplog.messages, what="the deletes sent again")
        assert client.get(flow_id).state == pb.FLOW_STATE_RUNNING  # not ended: queues remain
    finally:
        holder.close()  # the exclusive queue goes with its connection

    events = list(watch)  # the deletes, sent again, now all succeed
    assert end_of(events).state == pb.FLOW_STATE_SUCCEEDED
    assert exports_of(events) == EXPECTED
    assert_no_queue_left(broker_url, list(jobs.values()))
