"""Downloading a flow's exports: the items kept with its record, offloaded ones included
(`dagyo flow export`), to the caller who may see the flow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, Protocol

from google.protobuf import json_format

from executor.core.errors import (
    DagyoError,
    FlowNotFound,
    ObjectMissing,
    PreconditionFailed,
    RequestInvalid,
)
from executor.core.objects import ObjectStore
from executor.core.types import message_class
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal
from scheduler.service.exports import OFFLOADED
from scheduler.service.flowstate import FlowRuntime
from scheduler.service.limits import cut

CHUNK_BYTES = 1024 * 1024


class ExportRecords(Protocol):
    """What downloads read of the store: a flow's record and its runtime (its exports)."""

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        """The record of a flow, or None."""
        ...

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        """The runtime of a flow, or None."""
        ...


class Lifecycle(Protocol):
    """What downloads need of the lifecycle: its records, and its object store when it has
    one."""

    @property
    def store(self) -> ExportRecords:
        """The flow records."""
        ...

    @property
    def object_store(self) -> ObjectStore | None:
        """The object store of offloaded items (DAGYO_OBJECTS), or None."""
        ...


class ExportDownloads:
    """The items of a flow's exports, as chunks.

    Args:
        lifecycle: where the records and the object store are.
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    def items(self, principal: Principal, flow_id: str, export: str) -> Iterator[pb.ExportChunk]:
        """Each kept item of ``export`` of the flow, in chunks (see ``ExportChunk``).

        Raises:
            FlowNotFound: no such flow, or another tenant's.
            RequestInvalid: the flow has no such export.
            PreconditionFailed: an offloaded item is gone, or the scheduler has no store.
        """
        store = self._lifecycle.store
        record = store.get(flow_id)
        runtime = store.runtime(flow_id)
        if record is None or runtime is None or not principal.sees(record.tenant):
            raise FlowNotFound(
                flow_id,
                f"no flow {cut(flow_id, 100)!r} on this scheduler: `dagyo flow list` shows the "
                "flows it knows",
            )
        stream = runtime.exports.get(export)
        if stream is None:
            known = ", ".join(sorted(runtime.exports)) or "none"
            raise RequestInvalid(
                [f"flow {flow_id} has no export {export!r} (its exports: {known})"]
            )
        values = [json.loads(e.value_json) for e in record.exports if e.export == export]
        return self._chunks(values, stream.typename)

    def _chunks(self, values: list[Any], typename: str) -> Iterator[pb.ExportChunk]:
        for index, value in enumerate(values):
            reference = value.get(OFFLOADED) if isinstance(value, dict) else None
            if reference is None:
                message = json_format.ParseDict(value, message_class(typename)())
                data = message.SerializeToString()
                pieces: Iterator[bytes] = (
                    data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)
                )
                size, sha256 = len(data), hashlib.sha256(data).hexdigest()
            else:
                pieces = self._read(reference["key"])
                size, sha256 = reference["size"], reference["sha256"]
            for piece in pieces:
                yield pb.ExportChunk(item=index, data=piece, typename=typename)
            yield pb.ExportChunk(
                item=index, item_end=True, size=size, sha256=sha256, typename=typename
            )

    def _read(self, key: str) -> Iterator[bytes]:
        store = self._lifecycle.object_store
        if store is None:
            raise PreconditionFailed(
                [
                    "the export holds an offloaded item and this scheduler has no object "
                    "store: set DAGYO_OBJECTS to the store its flows used"
                ]
            )
        try:
            with store.open(key) as handle:
                while piece := handle.read(CHUNK_BYTES):
                    yield piece
        except ObjectMissing as e:
            raise PreconditionFailed([f"an offloaded exported item is gone: {e}"]) from e
        except DagyoError as e:
            raise PreconditionFailed([str(e)]) from e
