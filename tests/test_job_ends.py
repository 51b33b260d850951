"""Every way a job ends is reported, and an executor runs only the jobs meant for it: a
forged Stop fails the flow naming it instead of leaving it running for ever, and a job of
another progdef or version is refused unrun and reported."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.constants import FAILURES_EXCHANGE, STOP_EXCHANGE, failure_key
from executor.pb.dagyo.v1 import failure_pb2
from executor.pb.dagyo.v1.events_pb2 import Stop
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.job_pb2 import Job
from executor.types import Int64
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.flows import slow_flow
from tests.waiting import eventually


@pytest.fixture
def cluster(broker_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    started = LocalCluster(broker_url, tmp_path, names=("source", "slow", "count")).start()
    yield started
    started.close()


def test_a_forged_stop_fails_the_flow_naming_it(cluster: LocalCluster) -> None:
    flow_id = cluster.submit(slow_flow(100, 50))
    wait_for_node(cluster, flow_id, "w")
    with cluster.channel() as channel:
        forged = Stop(flow_id=flow_id, reason="a forged stop")
        channel.basic_publish(STOP_EXCHANGE, "", forged.SerializeToString())
    record = cluster.wait(flow_id)
    assert state_of(record) == "failed"
    assert record.failure.kind == failure_pb2.FAILURE_KIND_STOPPED
    assert f"stopped by a Stop for flow {flow_id} (a forged stop)" in record.failure.error
    assert "which this scheduler did not send" in record.failure.error
    assert cluster.flow_queues(flow_id) == []


@pytest.mark.parametrize("wrong", ["progdef", "version"])
def test_a_job_not_for_the_executors_progdef_and_version_is_refused_unrun(
    cluster: LocalCluster, wrong: str
) -> None:
    source = cluster.catalogue["source"]
    flow_id = uuid.uuid4().hex[:12]
    output = f"dagyo.flow.{flow_id}.in.n.items"
    job = Job(
        flow_id=flow_id,
        node="s",
        progdef="greet" if wrong == "progdef" else source.name,
        version=source.version if wrong == "progdef" else "0123456789abcdef",
    )
    job.inputs["count"].typename = "dagyo.types.Int64"
    job.inputs["count"].consts.items.append(Int64(value=3).SerializeToString())
    job.outputs["src"].typename = "dagyo.types.Text"
    job.outputs["src"].queues.append(output)
    with cluster.channel() as channel:
        channel.queue_declare(output)
        failures = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(failures, FAILURES_EXCHANGE, routing_key=failure_key(flow_id))
        channel.basic_publish("", source.mailbox, job.SerializeToString())
        reports: list[FailureReport] = []

        def reported() -> bool:
            method, _, body = channel.basic_get(failures, auto_ack=True)
            if method is not None:
                reports.append(FailureReport.FromString(body))
            return bool(reports)

        eventually(reported, what="the refused job's failure report")
        assert channel.queue_declare(output, passive=True).method.message_count == 0
        channel.queue_delete(output)
    (report,) = reports
    assert (report.node, report.kind) == ("s", failure_pb2.FAILURE_KIND_PANIC)
    assert "but this executor serves progdef source version" in report.error
    assert "refused unrun" in report.error
    record, exports = cluster.run(slow_flow(3, 0))  # and it still serves its own jobs
    assert (state_of(record), exports) == ("succeeded", {"total": [{"value": "3"}]})
