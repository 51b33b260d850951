"""The scheduler service on a real RabbitMQ and real gRPC, with a fake executor.

The fake executor (fake_executor.py) plays an executor's side of docs/protocol.md on raw
pika, step by step as each test tells it, so each test decides exactly when a job starts,
sends, panics, goes silent or ends. Every test runs in its own catalogue (unique mailboxes)
on a vhost of its own when rabbitmqctl can make one (conftest.py), and checks that the
broker is left clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pika
import pytest

from executor.core.progdef import load_catalogue
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.scheduler.fake_executor import (
    EXPECTED,
    FLOW,
    WAIT_S,
    Client,
    FakeExecutor,
    assert_no_queue_left,
    end_of,
    exports_of,
    mailboxes,
    run_to_success,
)

# --- tests ----------------------------------------------------------------------------------


def test_a_flow_succeeds_keeps_its_exports_and_leaves_no_queue(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    assert {job.flow_id for job in jobs.values()} == {flow_id}
    assert jobs["b"].inputs["text"].queue in jobs["a"].outputs["items"].queues
    watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
    run_to_success(fake, jobs)
    events = list(watch)

    end = end_of(events)
    assert end.state == pb.FLOW_STATE_SUCCEEDED
    assert exports_of(events) == EXPECTED
    assert {(n.node, n.state, n.executor, n.items_sent) for n in end.nodes} == {
        ("a", pb.NODE_STATE_ENDED, fake.id, 3),
        ("b", pb.NODE_STATE_ENDED, fake.id, 3),
    }
    record = client.get(flow_id)
    assert record.state == pb.FLOW_STATE_SUCCEEDED and record.name == "fake"
    assert [(e.export, json.loads(e.value_json)) for e in record.exports] == EXPECTED
    assert not record.exports_truncated and record.ended >= record.created > 0
    assert_no_queue_left(broker_url, list(jobs.values()))

    # A watch of a finished flow replays its kept exports, then its end.
    replay = client.watch(flow_id)
    assert exports_of(replay) == EXPECTED
    assert end_of(replay).state == pb.FLOW_STATE_SUCCEEDED
    listed = client.stub.List(pb.ListRequest(), timeout=WAIT_S).flows
    assert flow_id in [r.id for r in listed]


def test_invalid_flow_is_refused_with_every_problem(client: Client, catalogue: Path) -> None:
    bad = dict(FLOW, edges=[{"from": "a.items", "to": "b.txt"}])
    request = pb.SubmitRequest(flow_json=json.dumps(bad), source="fake.json")
    response = client.stub.Submit(request, timeout=WAIT_S)
    assert not response.flow_id
    from executor.core.errors import FlowInvalid
    from scheduler.flow.check import check_flow
    from scheduler.flow.parse import parse_flow

    with pytest.raises(FlowInvalid) as expected:
        check_flow(
            parse_flow(json.dumps(bad), source="fake.json"),
            load_catalogue(catalogue),
            source="fake.json",
        )
    assert list(response.problems) == expected.value.problems
    assert any("b.txt" in line for line in response.problems)


def test_a_progdef_nobody_serves_is_refused(client: Client, catalogue: Path) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    emit, relay = mailboxes(catalogue)
    assert caught.value.details().splitlines() == [
        f"progdef emit: no executor serves mailbox {emit} and it has no autoscaler: start "
        f"one with `dagyo up` or `python -m executor {catalogue / 'emit'}`",
        f"progdef relay: no executor serves mailbox {relay} and it has no autoscaler: start "
        f"one with `dagyo up` or `python -m executor {catalogue / 'relay'}`",
    ]
    assert client.stub.List(pb.ListRequest(), timeout=WAIT_S).flows == []


@pytest.fixture
def node_relay(catalogue: Path) -> Path:
    """relay as a node progdef (its code is not in a scheduler's catalogue)."""
    progdef = catalogue / "relay" / "progdef.json"
    data = json.loads(progdef.read_text())
    progdef.write_text(json.dumps({**data, "runtime": "node", "run": "main.js:run"}))
    return catalogue / "relay"


def test_a_node_progdef_nobody_serves_is_refused_naming_the_node_executor(
    node_relay: Path, client: Client, catalogue: Path
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit()
    emit, relay = mailboxes(catalogue)
    assert caught.value.details().splitlines() == [
        f"progdef emit: no executor serves mailbox {emit} and it has no autoscaler: start "
        f"one with `dagyo up` or `python -m executor {catalogue / 'emit'}`",
        f"progdef relay: no executor serves mailbox {relay} and it has no autoscaler: start "
        f"one with `dagyo up` or `node sdks/js/bin/dagyo-executor.js {node_relay}`",
    ]


def test_an_autoscaler_stands_in_for_executors(
    client: Client, catalogue: Path, broker_url: str
) -> None:
    for name in ("emit", "relay"):
        (catalogue / name / "AUTOSCALER").write_text("keda\n")
    flow_id = client.submit()
    record = client.stub.Cancel(pb.CancelRequest(flow_id=flow_id), timeout=WAIT_S)
    assert record.state == pb.FLOW_STATE_CANCELLED
    # The jobs wait in the mailboxes the scheduler declared for the autoscaler to see.
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for mailbox in mailboxes(catalogue):
        assert channel.queue_declare(mailbox, passive=True).method.message_count == 1
        channel.queue_delete(mailbox)
    connection.close()


def test_a_panic_fails_the_flow_stops_it_and_leaves_no_queue(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    report = fake.panic(jobs["b"], "ValueError: bad name", "Traceback (most recent call last):")
    end = end_of(client.watch(flow_id))

    assert end.state == pb.FLOW_STATE_FAILED
    assert end.failure == report
    # a was told to stop: it is not left running.
    assert {n.node: n.state for n in end.nodes} == {
        "a": pb.NODE_STATE_STOPPED,
        "b": pb.NODE_STATE_FAILED,
    }
    assert {n.node: n.state for n in client.get(flow_id).nodes}["a"] == pb.NODE_STATE_STOPPED
    assert fake.stop_for(flow_id).reason == "ValueError: bad name"
    failures = client.stub.Failures(pb.FailuresRequest(flow_id=flow_id), timeout=WAIT_S)
    assert list(failures.failures) == [report]
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_cancel_stops_the_flow_and_leaves_no_queue(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["a"])
    record = client.stub.Cancel(pb.CancelRequest(flow_id=flow_id), timeout=WAIT_S)
    assert record.state == pb.FLOW_STATE_CANCELLED
    assert record.failure.error == "cancelled by a user"
    # The started job and the one not yet started were both told to stop.
    assert {n.node: n.state for n in record.nodes} == {
        "a": pb.NODE_STATE_STOPPED,
        "b": pb.NODE_STATE_STOPPED,
    }
    assert fake.stop_for(flow_id).flow_id == flow_id
    assert_no_queue_left(broker_url, list(jobs.values()))
    failures = client.stub.Failures(pb.FailuresRequest(flow_id=flow_id), timeout=WAIT_S)
    assert [f.kind for f in failures.failures] == [record.failure.kind]
    # Cancelling an ended flow changes nothing.
    again = client.stub.Cancel(pb.CancelRequest(flow_id=flow_id), timeout=WAIT_S)
    assert again.state == pb.FLOW_STATE_CANCELLED and again.ended == record.ended


def test_unknown_flow_ids_are_not_found(client: Client) -> None:
    for call, request in (
        (client.stub.Get, pb.GetRequest(flow_id="0123456789ab")),
        (client.stub.Cancel, pb.CancelRequest(flow_id="0123456789ab")),
        (client.stub.Failures, pb.FailuresRequest(flow_id="0123456789ab")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=WAIT_S)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "0123456789ab" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        client.watch("0123456789ab")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_empty_flow_succeeds_at_once(client: Client) -> None:
    flow_id = client.submit({"name": "empty", "nodes": {}})
    assert end_of(client.watch(flow_id)).state == pb.FLOW_STATE_SUCCEEDED


def test_a_record_names_the_progdef_version_each_node_ran(
    client: Client, fake: FakeExecutor, catalogue: Path
) -> None:
    version = (catalogue / "emit" / "VERSION").read_text().strip()
    record = client.get(client.submit())
    assert [(n.node, n.progdef, n.version) for n in record.nodes] == [
        ("a", "emit", version),
        ("b", "relay", version),
    ]
