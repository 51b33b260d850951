"""The types a job brings stay that job's: a job redefining a type (acme.geo.Point, or
dagyo/types.proto) never changes what its executor knows, and later flows of the real type
still run there."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from executor.core.constants import FAILURES_EXCHANGE, failure_key
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from executor.pb.dagyo.v1.frame_pb2 import Frame
from executor.pb.dagyo.v1.job_pb2 import Job
from executor.types import Int64
from tests.cluster import LocalCluster
from tests.conftest import PROGDEFS
from tests.waiting import eventually


@pytest.fixture
def cluster(broker_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    started = LocalCluster(broker_url, tmp_path, names=("count",)).start()
    yield started
    started.close()


def geo(*, forged: bool) -> descriptor_pb2.FileDescriptorSet:
    """distance's geo.proto as a scheduler puts it in a job (count: items: T bound to
    acme.geo.Point); forged, Point's first field is a string: another acme.geo.Point."""
    real = descriptor_pb2.FileDescriptorSet.FromString(
        (PROGDEFS / "distance" / "types.binpb").read_bytes()
    )
    types = descriptor_pb2.FileDescriptorSet()
    for file in real.file:
        if file.name == "geo.proto":
            file = copy.deepcopy(file)
            file.ClearField("source_code_info")
            if forged:
                field = file.message_type[0].field[0]
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
            types.file.append(file)
    return types


def forged_builtin() -> descriptor_pb2.FileDescriptorSet:
    """dagyo/types.proto with Text's field a number."""
    file = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName("dagyo/types.proto").CopyToProto(file)
    text = next(m for m in file.message_type if m.name == "Text")
    text.field[0].type = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
    forged = descriptor_pb2.FileDescriptorSet()
    forged.file.append(file)
    return forged


def run_job(
    cluster: LocalCluster, types: descriptor_pb2.FileDescriptorSet, typename: str
) -> tuple[list[bytes], list[FailureReport]]:
    """Publish a job for count (one empty item of ``typename``) bringing ``types``; return
    its output frames and failure reports."""
    count = cluster.catalogue["count"]
    flow_id = uuid.uuid4().hex[:12]
    output = f"dagyo.flow.{flow_id}.export.total"
    job = Job(flow_id=flow_id, node="n", progdef=count.name, version=count.version)
    job.inputs["items"].typename = typename
    job.inputs["items"].consts.items.append(b"")
    job.outputs["total"].typename = "dagyo.types.Int64"
    job.outputs["total"].queues.append(output)
    job.types.CopyFrom(types)
    frames: list[bytes] = []
    reports: list[FailureReport] = []
    with cluster.channel() as channel:
        channel.queue_declare(output)
        failures = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(failures, FAILURES_EXCHANGE, routing_key=failure_key(flow_id))
        channel.basic_publish("", count.mailbox, job.SerializeToString())

        def done() -> bool:
            for queue, into in ((output, frames), (failures, reports)):
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    into.append(body if into is frames else FailureReport.FromString(body))
            ended = frames and Frame.FromString(frames[-1]).end_of_stream
            return bool(ended or reports)

        eventually(done, what="the job's end")
        channel.queue_delete(output)
    return frames, reports


def counted(frames: list[bytes]) -> list[int]:
    return [Int64.FromString(i).value for f in frames for i in Frame.FromString(f).items]


def test_a_job_redefining_a_custom_type_does_not_change_it_for_later_jobs(
    cluster: LocalCluster,
) -> None:
    frames, reports = run_job(cluster, geo(forged=True), "acme.geo.Point")
    assert (reports, counted(frames)) == ([], [1]), "the forged job's types are its own"
    # Before, the forged file stayed in the executor: the real one was refused as different.
    frames, reports = run_job(cluster, geo(forged=False), "acme.geo.Point")
    assert [r.error for r in reports] == []
    assert counted(frames) == [1]


def test_a_job_redefining_a_builtin_file_panics_alone(cluster: LocalCluster) -> None:
    _, reports = run_job(cluster, forged_builtin(), "dagyo.types.Text")
    (report,) = reports
    assert "the job's dagyo/types.proto defines its messages differently from the " in (
        report.error
    )
    assert "a job's types never change what an executor knows" in report.error
    frames, reports = run_job(cluster, geo(forged=False), "acme.geo.Point")
    assert (reports, counted(frames)) == ([], [1])
