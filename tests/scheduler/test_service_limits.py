"""The scheduler's bounds, through the real CLI and a real scheduler on the real broker:
problem lists, message sizes, Watch streams per client and in all, slow watchers."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import Result

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.config import SchedulerSettings
from scheduler.service.limits import export_bytes
from tests.commands import dagyo_at
from tests.scheduler.fake_executor import (
    FLOW,
    WAIT_S,
    Client,
    FakeExecutor,
    run_to_success,
)
from tests.waiting import eventually

# Each channel its own connection (grpc shares one between like channels of a process):
# each is one client to the scheduler, as separate processes are.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def dagyo(client: Client, *args: str) -> Result:
    return dagyo_at(client.scheduler.address, *args)


def write(tmp_path: Path, flow: dict[str, Any]) -> Path:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    return path


def test_hundreds_of_problems_come_back_as_lines_and_exit_2(client: Client, tmp_path: Path) -> None:
    nodes = {f"n{i}": {"progdef": "nope"} for i in range(300)}
    result = dagyo(client, "flow", "submit", str(write(tmp_path, {"name": "big", "nodes": nodes})))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 101
    assert lines[-1] == "dagyo: … and 200 more problems"
    assert all("nope" in line for line in lines[:100])
    assert max(len(line) for line in lines) < 1000


def test_a_long_name_is_echoed_cut(client: Client, tmp_path: Path) -> None:
    flow = {"name": "long", "nodes": {"y" * 20_000: {"progdef": "nope"}}}
    result = dagyo(client, "flow", "submit", str(write(tmp_path, flow)))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "more characters not shown" in line and len(line) < 1000


@pytest.fixture
def small(settings: SchedulerSettings) -> Iterator[Client]:
    started = Client(
        dataclasses.replace(settings, max_message_bytes=65536, grpc_workers=8, watches_per_client=3)
    )
    yield started
    started.close()


def test_a_flow_over_the_message_limit_is_one_line_and_exit_2(
    small: Client, tmp_path: Path
) -> None:
    flow = dict(FLOW, name="n" * 100_000)
    result = dagyo(small, "flow", "submit", str(write(tmp_path, flow)))
    assert result.exit_code == 2, result.output
    size = len(json.dumps(flow).encode())
    assert result.stderr == (
        f"dagyo: the flow is {size} bytes, more than the 65536 the scheduler accepts in one "
        "request (DAGYO_MAX_MESSAGE_BYTES on the scheduler)\n"
    )


def test_watch_streams_past_the_cap_are_refused_and_others_still_get_answers(
    small: Client, fake: FakeExecutor, tmp_path: Path
) -> None:
    flow_id = small.submit()
    greedy = grpc.insecure_channel(small.scheduler.address, options=OWN_CONNECTION)
    stub = scheduler_pb2_grpc.SchedulerStub(greedy)
    streams = [stub.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S) for _ in range(6)]
    try:
        outcomes: list[str] = []
        for stream in streams:
            try:
                next(stream)
                outcomes.append("open")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                outcomes.append(e.details())
        # The six calls reach the scheduler in any order: three open, three are refused.
        assert (
            sorted(outcomes)
            == ["open"] * 3
            + [
                "this client already has 3 Watch streams open, the most one client may "
                "(DAGYO_WATCHES_PER_CLIENT): close some first"
            ]
            * 3
        )
        # Another client: its own watches up to the total (8 workers keep 4 for unary
        # calls), then List and Submit answer.
        other = grpc.insecure_channel(small.scheduler.address, options=OWN_CONNECTION)
        more = scheduler_pb2_grpc.SchedulerStub(other)
        extra = more.Watch(pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S)
        next(extra)
        third = grpc.insecure_channel(small.scheduler.address, options=OWN_CONNECTION)
        refused = scheduler_pb2_grpc.SchedulerStub(third).Watch(
            pb.WatchRequest(flow_id=flow_id), timeout=WAIT_S
        )
        with pytest.raises(grpc.RpcError) as caught:
            next(refused)
        assert "the scheduler already serves 4 Watch streams" in caught.value.details()
        listed = dagyo(small, "flow", "list")
        assert listed.exit_code == 0 and flow_id in listed.stdout
        submitted = dagyo(small, "flow", "submit", str(write(tmp_path, FLOW)))
        assert submitted.exit_code == 0, submitted.output
        extra.cancel()
        other.close()
        third.close()
    finally:
        for stream in streams:
            stream.cancel()
        greedy.close()


def test_a_watcher_that_does_not_read_is_dropped_and_told(settings: SchedulerSettings) -> None:
    started = Client(dataclasses.replace(settings, watcher_events=16))
    try:
        watchers = started.scheduler.lifecycle.watchers
        record = pb.FlowRecord(id="f")
        subscription = watchers.subscribe("f", record, [])
        done = threading.Event()
        watchers.exports("f", [pb.Export(export="out", value_json='"x"')] * 100)
        assert subscription.overflowed
        assert subscription.next(0.01) is None
        done.set()
    finally:
        started.close()


def test_a_watch_that_missed_exports_past_the_cap_says_how_many_and_exits_5(
    settings: SchedulerSettings, fake: FakeExecutor
) -> None:
    one = export_bytes("out", '{"text":"x0"}')
    capped = Client(dataclasses.replace(settings, export_cap_bytes=2 * one))
    try:
        flow_id = capped.submit()
        run_to_success(fake, fake.next_jobs(2))
        eventually(lambda: capped.get(flow_id).state == pb.FLOW_STATE_SUCCEEDED, what="the end")
        watched = dagyo(capped, "flow", "watch", flow_id)
        assert watched.exit_code == 5, watched.output
        assert [json.loads(line)["value"]["text"] for line in watched.stdout.splitlines()] == [
            "x0",
            "x1",
        ]
        assert watched.stderr == (
            f"dagyo: flow {flow_id}: 1 exports past the scheduler's size cap "
            "(DAGYO_EXPORT_CAP_BYTES) were dropped before this watch saw them\n"
        )
        status = dagyo(capped, "flow", "status", flow_id)
        assert "exports kept: 2 (1 not kept: past the size cap)" in status.stdout
    finally:
        capped.close()


def test_a_cancelled_flow_reads_as_a_sentence_and_its_nodes_are_stopped(
    client: Client, fake: FakeExecutor
) -> None:
    flow_id = client.submit()
    jobs = fake.next_jobs(2)
    fake.start_job(jobs["a"])
    eventually(
        lambda: client.get(flow_id).nodes[0].state == pb.NODE_STATE_RUNNING, what="a running"
    )
    assert dagyo(client, "flow", "cancel", flow_id).stdout == f"{flow_id} cancelled\n"
    status = dagyo(client, "flow", "status", flow_id)
    assert "failure (cancelled): the flow was cancelled by a user" in status.stdout
    lines = status.stdout.splitlines()
    column = lines[2].split().index("state")  # the table's header names its columns
    rows = {line.split()[0]: line.split()[column] for line in lines[3:5]}
    assert rows == {"a": "stopped", "b": "stopped"}
    watched = dagyo(client, "flow", "watch", flow_id)
    assert watched.exit_code == 1
    assert watched.stderr == f"dagyo: flow {flow_id} was cancelled\n"
    failures = dagyo(client, "failures", "--flow", flow_id)
    assert failures.stdout == f"{flow_id}: cancelled by a user\n"


def test_list_and_failures_fetch_every_page(client: Client) -> None:
    empty = json.dumps({"name": "empty", "nodes": {}})
    ids = {
        client.stub.Submit(pb.SubmitRequest(flow_json=empty), timeout=WAIT_S).flow_id
        for _ in range(130)
    }
    first = client.stub.List(pb.ListRequest(limit=50), timeout=WAIT_S)
    assert len(first.flows) == 50 and first.next_page_token
    # The Flow JSON (up to a message's size) comes with Get only.
    assert not any(r.flow_json for r in first.flows)
    assert client.get(first.flows[0].id).flow_json == empty
    listed = dagyo(client, "flow", "list")
    assert listed.exit_code == 0
    assert {line.split()[0] for line in listed.stdout.splitlines()} == ids


def test_an_unknown_huge_flow_id_is_echoed_cut(client: Client) -> None:
    result = dagyo(client, "flow", "status", "z" * 100_000)
    assert result.exit_code == 2
    assert "more characters not shown" in result.stderr and len(result.stderr) < 1000
