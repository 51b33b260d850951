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
from tests.conformance.executors import ExecutorCommand, start_executor
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
from tests.waiting import eventually

JOBS = 150
CHANNEL_MAX = 64


@pytest.fixture
def wire(broker_url: str) -> Iterator[Wire]:
    wire = Wire(broker_url)
    yield wire
    wire.close()


def test_jobs_past_one_connections_channels_all_wait_at_once_and_end_with_their_items(
    wire: Wire, tmp_path: Path
) -> None:
    command = ExecutorCommand([sys.executable, "-m", "executor", "{progdef}"], "python")
    relay = start_executor(
        command,
        wire,
        "relay",
        tmp_path / "executor.log",
        DAGYO_QUEUE=f"{wire.url}?channel_max={CHANNEL_MAX}",
        DAGYO_MAX_JOBS=str(JOBS),
    )
    try:
        flows: dict[str, tuple[Stream, Stream]] = {}
        for _ in range(JOBS):
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

        # Every job holds its channel and waits on its input, none has an item yet.
        eventually(lambda: started() == JOBS, WAIT_S * 4, what=f"all {JOBS} jobs to start")
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
