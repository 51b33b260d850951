"""One executor running more jobs at once than one AMQP connection has channels.

Each running job holds a channel of its own, and a connection has at most ``channel_max``
of them (2047 on RabbitMQ by default). Past one connection's channels the executor opens
another for the next jobs. Here the client asks for 64 channels per connection
(``?channel_max=64`` in DAGYO_QUEUE), so 150 jobs waiting at once need several.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.pb.dagyo.v1.job_pb2 import Output
from tests.conformance.executors import ExecutorCommand, RunningExecutor, start_executor
from tests.conformance.wire import (
    TEXT,
    WAIT_S,
    Stream,
    Wire,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    stream_into,
    text_of,
    texts,
)
from tests.conftest import rabbitmqctl, vhost_of
from tests.waiting import eventually

JOBS = 150
CHANNEL_MAX = 64


@pytest.fixture
def wire(broker_url: str) -> Iterator[Wire]:
    wire = Wire(broker_url)
    yield wire
    wire.close()


def relay_executor(wire: Wire, tmp_path: Path, jobs: int) -> RunningExecutor:
    command = ExecutorCommand([sys.executable, "-m", "executor", "{progdef}"], "python")
    return start_executor(
        command,
        wire,
        "relay",
        tmp_path / "executor.log",
        DAGYO_QUEUE=f"{wire.url}?channel_max={CHANNEL_MAX}",
        DAGYO_MAX_JOBS=str(jobs),
    )


def waiting_jobs(wire: Wire, relay: RunningExecutor, jobs: int) -> dict[str, tuple[Stream, Stream]]:
    """Publish ``jobs`` relay jobs, each waiting on an input of its own; wait until all
    started. Their input and output streams by flow."""
    flows: dict[str, tuple[Stream, Stream]] = {}
    for _ in range(jobs):
        flow_id = new_flow_id()
        source = stream_into(wire, flow_id, "relay", "text")
        [out] = fan_out(wire, flow_id, ["down.text"])
        job = job_for(
            relay.progdef, relay.version, flow_id, "relay", {"text": input_from(source)}, {}
        )
        job.outputs["text"].CopyFrom(Output(typename=TEXT, queues=[out.queue], token=out.token))
        wire.publish_job(relay.mailbox, job)
        flows[flow_id] = (source, out)

    def started() -> int:
        return len({e.job.flow_id for e in wire.events("started")} & flows.keys())

    eventually(lambda: started() == jobs, WAIT_S * 4, what=f"all {jobs} jobs to start")
    return flows


def connections_by_channels(vhost: str) -> list[tuple[str, int]]:
    """(pid, channels) of every connection to ``vhost``."""
    out = rabbitmqctl("list_connections", "-q", "--no-table-headers", "vhost", "pid", "channels")
    rows = [line.split("\t") for line in out.splitlines()]
    return [(pid, int(channels)) for where, pid, channels in rows if where == vhost]


def test_jobs_past_one_connections_channels_all_wait_at_once_and_end_with_their_items(
    wire: Wire, tmp_path: Path
) -> None:
    relay = relay_executor(wire, tmp_path, JOBS)
    try:
        flows = waiting_jobs(wire, relay, JOBS)
        # Every job holds its channel and waits on its input, none has an item yet.
        assert not wire.events("ended"), relay.output()

        for index, (source, _) in enumerate(flows.values()):
            items = texts(*(f"item-{index}-{i}" for i in range(3)))
            wire.send(source.queue, source.frame(items, 0, end=True))
        for index, (flow_id, (_, out)) in enumerate(flows.items()):
            assert wire.ended(flow_id, "relay").outcome == "", relay.output()
            assert text_of(wire.frames(out.queue)) == [f"item-{index}-{i}" for i in range(3)]
        assert relay.terminate() == 0, relay.output()
        assert "Traceback" not in relay.output()
    finally:
        relay.terminate()


def test_losing_a_further_connection_fails_only_the_jobs_on_it(wire: Wire, tmp_path: Path) -> None:
    # 38 jobs fit on the executor's own connection at channel_max 64 (8 channels kept for
    # itself, 2 ready, 16 kept clean); the next 12 go on a second one.
    jobs, on_first = 50, 38
    relay = relay_executor(wire, tmp_path, jobs)
    try:
        flows = waiting_jobs(wire, relay, jobs)
        vhost = vhost_of(wire.url)
        [(second, _)] = [c for c in connections_by_channels(vhost) if 10 <= c[1] <= 20]
        rabbitmqctl("close_connection", second, "closed by the test")

        failed = eventually(
            lambda: (ended := wire.events("ended")) and len(ended) >= jobs - on_first and ended,
            WAIT_S,
            what="the jobs on the lost connection to end",
        )
        assert {e.outcome for e in failed} == {"broker"}, relay.output()
        assert all("the executor lost its connection to broker node" in e.reason for e in failed)
        lost = {e.job.flow_id for e in failed}
        assert len(lost) == jobs - on_first

        for flow_id, (source, _) in flows.items():
            if flow_id not in lost:
                wire.send(source.queue, source.frame(texts(flow_id), 0, end=True))
        for flow_id, (_, out) in flows.items():
            if flow_id not in lost:
                assert wire.ended(flow_id, "relay").outcome == "", relay.output()
                assert text_of(wire.frames(out.queue)) == [flow_id]
    finally:
        relay.terminate()
