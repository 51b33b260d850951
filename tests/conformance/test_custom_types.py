"""Custom types carried by the job (docs/protocol.md, Jobs): a port of a type variable
bound to a type the executor has never seen is read with the job's descriptor set.

The ``label`` progdef (input ``value: T``) sends the field ``label`` of each item as a
Text. The type, ``conformance.v1.Sample``, exists only in the job's ``types``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.conformance.conftest import StartExecutor
from tests.conformance.wire import (
    Wire,
    const_input,
    fan_out,
    input_from,
    job_for,
    new_flow_id,
    output_to,
    stream_into,
    text_of,
)

TYPENAME = "conformance.v1.Sample"


def sample_file() -> descriptor_pb2.FileDescriptorProto:
    """conformance/sample.proto: ``message Sample { string label = 1; double weight = 2; }``"""
    file = descriptor_pb2.FileDescriptorProto(
        name="conformance/sample.proto", package="conformance.v1", syntax="proto3"
    )
    message = file.message_type.add(name="Sample")
    message.field.add(name="label", number=1, type=9, label=1)  # string
    message.field.add(name="weight", number=2, type=1, label=1)  # double
    return file


def samples(*labels: str) -> list[bytes]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(sample_file())
    sample = message_factory.GetMessageClass(pool.FindMessageTypeByName(TYPENAME))
    return [
        sample(label=label, weight=i + 0.5).SerializeToString() for i, label in enumerate(labels)
    ]


def test_items_of_a_type_only_the_job_brings_are_read(wire: Wire, start: StartExecutor) -> None:
    label = start("label", DAGYO_MAX_JOBS="8")
    types = descriptor_pb2.FileDescriptorSet(file=[sample_file()])
    for source_kind in ("consts", "stream"):
        flow_id = new_flow_id()
        out = fan_out(wire, flow_id, ["down.text"])
        if source_kind == "consts":
            source = const_input(samples("north", "south"), TYPENAME)
        else:
            stream = stream_into(wire, flow_id, "label", "value", TYPENAME)
            wire.send(stream.queue, stream.frame(samples("north", "south"), 0, end=True))
            source = input_from(stream, "up.value")
        job = job_for(
            label.progdef,
            label.version,
            flow_id,
            "label",
            {"value": source},
            {"label": output_to(out)},
        )
        job.types.CopyFrom(types)
        wire.publish_job(label.mailbox, job)
        assert text_of(wire.frames(out[0].queue)) == ["north", "south"], source_kind
        assert wire.ended(flow_id, "label").outcome == ""
