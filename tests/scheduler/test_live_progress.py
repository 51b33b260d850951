"""Live progress in flow records: items sent and received per node and per edge from
heartbeats, the times each job was published, started and ended, and the queue depth of
each edge sampled while the flow runs (a real scheduler, a fake executor)."""

from __future__ import annotations

import time
from collections.abc import Callable

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from tests.scheduler.fake_executor import (
    WAIT_S,
    Client,
    FakeExecutor,
    assert_no_queue_left,
    end_of,
    texts,
)
from tests.waiting import eventually


def wait_for(client: Client, flow_id: str, ok: Callable[[pb.FlowRecord], bool]) -> pb.FlowRecord:
    return eventually(lambda: client.get(flow_id), WAIT_S, until=ok, what="the record there")


def edges(record: pb.FlowRecord) -> list[tuple[str, str, int, int]]:
    return [(e.source, e.target, e.items_sent, e.items_received) for e in record.edges]


def test_heartbeats_move_items_received_and_each_edge_while_jobs_run(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    record = client.get(flow_id)
    assert edges(record) == [("a.items", "b.text", 0, 0)]
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    fake.report(jobs["a"], sent={"items": 7}, received={"n": 1})
    fake.report(jobs["b"], sent={"text": 4}, received={"text": 5})

    record = wait_for(client, flow_id, lambda r: edges(r) == [("a.items", "b.text", 7, 5)])
    a, b = record.nodes
    assert [(n.node, n.items_received, n.items_sent) for n in record.nodes] == [
        ("a", 1, 7),
        ("b", 5, 4),
    ]
    assert 0 < a.published <= a.started and 0 < b.published <= b.started
    assert a.ended == b.ended == 0

    fake.send(jobs["a"], "items", texts("x0", "x1", "x2"), seq=0, end=True)
    fake.end_job(jobs["a"], {"items": 3}, {"n": 1})
    fake.send(jobs["b"], "text", texts("x0", "x1", "x2"), seq=0, end=True)
    watch = client.stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
    fake.end_job(jobs["b"], {"text": 3}, {"text": 3})
    end = end_of(list(watch))
    assert end.state == pb.FLOW_STATE_SUCCEEDED
    assert edges(end) == [("a.items", "b.text", 3, 3)]
    assert [(n.node, n.items_received, n.items_sent) for n in end.nodes] == [
        ("a", 1, 3),
        ("b", 3, 3),
    ]
    assert all(n.started <= n.ended <= end.ended for n in end.nodes)
    assert_no_queue_left(broker_url, list(jobs.values()))


def test_the_queue_depth_of_each_edge_is_sampled_while_the_flow_runs(
    client: Client, fake: FakeExecutor, broker_url: str
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    for job in jobs.values():
        fake.start_job(job)
    before = time.time()
    for seq in range(3):  # nobody consumes b's input: the frames wait in its queue
        fake.send(jobs["a"], "items", texts(f"x{seq}"), seq=seq)

    record = wait_for(client, flow_id, lambda r: r.edges[0].queue_depth == 3)
    assert record.edges[0].sampled >= before
    client.stub.Cancel(pb.CancelRequest(flow_id=flow_id), timeout=WAIT_S)
    assert_no_queue_left(broker_url, list(jobs.values()))
