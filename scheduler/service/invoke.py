"""The gRPC ``Invoke``: one progdef run on given items, its outputs streamed back.

An invocation is a one-node flow (``scheduler.flow.invoke``) submitted and watched through
the servicer's own ``Submit`` and ``Watch``, so it is checked, held to the caller's quotas,
recorded and watched (within the same stream limits) exactly as a flow is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from executor.core.errors import FlowInvalid, ProgdefInvalid
from executor.core.progdef import Progdef
from scheduler.flow.invoke import SOURCE, invocation_flow
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.limits import details


def invoke(
    request: pb.InvokeRequest,
    context: grpc.ServicerContext,
    *,
    catalogue: Callable[[], Mapping[str, Progdef]],
    submit: Callable[[pb.SubmitRequest, grpc.ServicerContext], Any],
    watch: Callable[[pb.WatchRequest, grpc.ServicerContext], Iterator[pb.WatchEvent]],
) -> Iterator[pb.InvokeEvent]:
    """Stream the flow id, then every output item in order, then the end record.

    Args:
        catalogue: the progdefs the caller may use.
        submit: the servicer's Submit (it aborts for quotas, an unserved progdef, the broker).
        watch: the servicer's Watch.

    Aborts with INVALID_ARGUMENT (the problem lines) for an unknown progdef or port, a
    malformed input or a value of the wrong type; FAILED_PRECONDITION when the catalogue
    is invalid.
    """
    try:
        progdefs = catalogue()
    except ProgdefInvalid as e:
        context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            details(["the scheduler's progdef catalogue is invalid:", *e.problems]),
        )
    try:
        flow_json = invocation_flow(request.progdef, request.input, progdefs)
    except FlowInvalid as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, details(e.problems))
    source = f"{SOURCE} {request.progdef}"
    response = submit(pb.SubmitRequest(flow_json=flow_json, source=source), context)
    if response.problems or not response.flow_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, details(list(response.problems)))
    yield pb.InvokeEvent(flow_id=response.flow_id)
    for event in watch(pb.WatchRequest(flow_id=response.flow_id), context):
        kind = event.WhichOneof("kind")
        if kind == "export":
            yield pb.InvokeEvent(output=event.export)
        elif kind == "end":
            yield pb.InvokeEvent(end=event.end)
