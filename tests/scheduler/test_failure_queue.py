"""The scheduler hears its flows' failure reports on its shards' queues.

`dagyo.scheduler.failures.{shard}` is bound to `dagyo.failures` with `{shard}.*`
(docs/protocol.md, Topology): a flow costs the broker no failure queue and no binding of
its own, and a report is the failure of the flow its routing key names. These tests hold
that a panic still fails its flow, that what comes for no flow the scheduler runs (or does
not decode) is dropped without stopping the consumer, and that the queues deleted by hand
come back.
"""

from __future__ import annotations

import time
import uuid

import pika

from executor.core.constants import (
    FAILURES_EXCHANGE,
    PREFIX,
    SHARDS,
    failure_key,
    shard_failures_queue,
)
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_PANIC, FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.scheduler.fake_executor import (
    Client,
    FakeExecutor,
    assert_no_queue_left,
    end_of,
    flow_queues,
    queue_exists,
    queues_by_flow,
)
from tests.waiting import eventually

SHARD_QUEUES = [shard_failures_queue(f"{n:x}") for n in range(SHARDS)]


def publish(url: str, routing_key: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(FAILURES_EXCHANGE, routing_key, body, mandatory=True)
    finally:
        connection.close()


def depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def report(flow_id: str, node: str = "b", error: str = "ValueError: bad name") -> FailureReport:
    return FailureReport(
        flow_id=flow_id, node=node, progdef="p", executor="x", error=error,
        kind=FAILURE_KIND_PANIC, time=time.time(),
    )  # fmt: skip


def test_a_flow_declares_no_failure_queue_and_a_panic_still_fails_it(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)

    # Only its streams and exports: no dagyo.flow.{flow}.failures any more.
    streams = set().union(*(flow_queues(job) for job in jobs.values()))
    in_broker = {f"{PREFIX}.flow.{flow_id}.{rest}" for rest in queues_by_flow(broker_url)[flow_id]}
    assert in_broker == streams
    assert any(".export." in q for q in streams) and any(".in." in q for q in streams)
    assert not queue_exists(broker_url, f"{PREFIX}.flow.{flow_id}.failures")

    for job in jobs.values():
        fake.start_job(job)
    sent = fake.panic(jobs["b"], "ValueError: bad name", "Traceback (most recent call last):")
    end = end_of(client.watch(flow_id))
    assert end.state == pb.FLOW_STATE_FAILED and end.failure == sent
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_reports_for_no_running_flow_or_undecodable_are_dropped_and_the_next_one_counts(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    publish(broker_url, failure_key(uuid.uuid4().hex[:12]), report("nobody").SerializeToString())
    publish(broker_url, failure_key(flow_id), b"\xff\xff not a report")

    # The routing key names the flow, whatever the body says.
    publish(
        broker_url,
        failure_key(flow_id),
        report("another-flow", error="RuntimeError").SerializeToString(),
    )
    end = end_of(client.watch(flow_id))

    assert end.state == pb.FLOW_STATE_FAILED
    assert (end.failure.flow_id, end.failure.error) == (flow_id, "RuntimeError")
    eventually(
        lambda: depth(broker_url, shard_failures_queue(flow_id[0])) == 0,
        what="the failures queue to drain",
    )
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_the_failures_queue_deleted_by_hand_is_declared_again(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in SHARD_QUEUES:
            channel.queue_delete(queue)
    finally:
        connection.close()
    eventually(
        lambda: all(queue_exists(broker_url, q) for q in SHARD_QUEUES),
        what="the failures queues again",
    )

    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    fake.panic(jobs["b"], "ValueError: bad name", "")

    assert end_of(client.watch(flow_id)).state == pb.FLOW_STATE_FAILED
