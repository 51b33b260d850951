"""Downloading a flow's exports: the items kept with its record, offloaded ones included
(`dagyo flow export`), to the caller who may see the flow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ExportItem:
    """One kept item of an export: its typename, size and SHA-256 (of its serialized
    bytes), and the bytes themselves, or where they are in the object store."""

    typename: str
    size: int
    sha256: str
    data: bytes = b""
    key: str = ""
    store: ExportDownloads | None = None

    @property
    def offloaded(self) -> bool:
        """Whether the item is read from the object store."""
        return bool(self.key)

    def read(self) -> Iterator[bytes]:
        """The serialized item in pieces of at most :data:`CHUNK_BYTES`.

        Raises:
            PreconditionFailed: an offloaded item is gone, or its store cannot be read.
        """
        if self.store is not None and self.key:
            yield from self.store.read(self.key)
            return
        for start in range(0, len(self.data), CHUNK_BYTES):
            yield self.data[start : start + CHUNK_BYTES]


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
        values, typename = self._values(principal, flow_id, export)
        return self._chunks(values, typename)

    def item(self, principal: Principal, flow_id: str, export: str, index: int) -> ExportItem:
        """One kept item of ``export`` of the flow (the dashboard's download link): its
        serialized bytes as pieces, read from the store as they are sent when offloaded.

        Raises:
            FlowNotFound: no such flow, or another tenant's.
            RequestInvalid: the flow has no such export, or the export no such item.
            PreconditionFailed: an offloaded item is gone, or the scheduler has no store.
        """
        values, typename = self._values(principal, flow_id, export)
        if not 0 <= index < len(values):
            raise RequestInvalid(
                [f"export {export!r} of flow {flow_id} keeps {len(values)} items: no item {index}"]
            )
        found = self._item(values[index], typename)
        if found.offloaded:
            self._check_store()  # refused before anything is sent, not halfway
        return found

    def _values(self, principal: Principal, flow_id: str, export: str) -> tuple[list[Any], str]:
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
        return values, stream.typename

    def _item(self, value: Any, typename: str) -> ExportItem:
        reference = value.get(OFFLOADED) if isinstance(value, dict) else None
        if reference is None:
            message = json_format.ParseDict(value, message_class(typename)())
            data = message.SerializeToString()
            return ExportItem(typename, len(data), hashlib.sha256(data).hexdigest(), data)
        return ExportItem(
            typename, reference["size"], reference["sha256"], key=reference["key"], store=self
        )

    def _chunks(self, values: list[Any], typename: str) -> Iterator[pb.ExportChunk]:
        for index, value in enumerate(values):
            item = self._item(value, typename)
            for piece in item.read():
                yield pb.ExportChunk(item=index, data=piece, typename=typename)
            yield pb.ExportChunk(
                item=index, item_end=True, size=item.size, sha256=item.sha256, typename=typename
            )

    def _check_store(self) -> None:
        if self._lifecycle.object_store is None:
            raise PreconditionFailed(
                [
                    "the export holds an offloaded item and this scheduler has no object "
                    "store: set DAGYO_OBJECTS to the store its flows used"
                ]
            )

    def read(self, key: str) -> Iterator[bytes]:
        """The object under ``key``, in pieces of :data:`CHUNK_BYTES`.

        Raises:
            PreconditionFailed: the object is gone, the store cannot be read, or the
                scheduler has no store.
        """
        self._check_store()
        store = self._lifecycle.object_store
        assert store is not None
        try:
            with store.open(key) as handle:
                while piece := handle.read(CHUNK_BYTES):
                    yield piece
        except ObjectMissing as e:
            raise PreconditionFailed([f"an offloaded exported item is gone: {e}"]) from e
        except DagyoError as e:
            raise PreconditionFailed([str(e)]) from e
