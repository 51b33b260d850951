"""What the scheduler consumes for its flows: every flow's failure reports (on its one
failures queue), each flow's export queues and its recording queues (docs/cache.md).

A failure report ends the flow its routing key names as failed; an export frame is read
(its seq and typename checked, its items kept up to the cap) and handed to watchers; an
export queue deleted under the flow fails it (BROKER). The handlers run on the broker's
I/O thread, but for export frames holding offloaded items, read where their objects are
copied (exportcopies.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

import pika
from google.protobuf.message import DecodeError as ProtobufDecodeError

from executor.core.constants import SCHEDULER_APP_ID
from executor.core.errors import DagyoError, DecodeError
from executor.core.framecheck import admit
from executor.core.objects import ObjectStore
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_BROKER,
    FAILURE_KIND_PANIC,
    FailureKind,
    FailureReport,
)
from executor.pb.dagyo.v1.frame_pb2 import Frame
from scheduler.service.consumers import AckLater
from scheduler.service.ending import Ending
from scheduler.service.exportcopies import ExportCopies
from scheduler.service.exports import copy_offloaded, decode_frame, offloaded_key, read_frame
from scheduler.service.flows import FlowParts
from scheduler.service.flowstate import ActiveFlow, FlowState

if TYPE_CHECKING:
    from scheduler.service.cached import ClusterCache

log = logging.getLogger("dagyo.scheduler")


class FlowQueues:
    """Handles every flow's failure reports and consumes its export queues for the lifecycle.

    Args:
        parts: the flows, their store, the broker, the metrics and the watchers.
        ending: ends a flow at a failure report, a bad export frame or a lost queue.
        export_cap_bytes: JSON bytes of exports kept per flow.
    """

    def __init__(
        self,
        parts: FlowParts,
        ending: Ending,
        *,
        export_cap_bytes: int,
        objects: ObjectStore | None = None,
        cache: ClusterCache | None = None,
    ) -> None:
        self._objects = objects
        self._copies = ExportCopies()
        self._cache = cache
        self._table = parts.table
        self._store = parts.store
        self._broker = parts.broker
        self._metrics = parts.metrics
        self._watchers = parts.watchers
        self._export_cap_bytes = export_cap_bytes
        self._fail = ending.fail
        self._finish = ending.finish
        # Whether this scheduler owns a flow's shard now (the lifecycle's ``owns``).
        self.owns: Callable[[str], bool] = lambda flow_id: True

    def consume(self, flow: ActiveFlow) -> None:
        """Consume a flow's export queues (again, after a resume)."""
        lost = partial(self._queue_lost, flow.id)
        for export, stream in flow.runtime.exports.items():
            self._broker.consume(
                stream.queue,
                partial(self._on_export, flow.id, export),
                on_cancel=partial(lost, stream.queue),
            )
        for name, stream in flow.runtime.recordings.items():
            self._broker.consume(
                stream.queue,
                partial(self._on_recording, flow.id, name),
                on_cancel=partial(lost, stream.queue),
            )

    def on_failure(
        self, flow_id: str, report: FailureReport, properties: pika.BasicProperties
    ) -> AckLater | None:
        """A report off the failures queue, for the flow its routing key names; acked once
        it is stored."""
        if properties.app_id == SCHEDULER_APP_ID:
            return None  # the scheduler's own report, recorded when it was decided
        if not self.owns(flow_id):
            return _not_ours  # for the shard's owner, once the channel is reset
        with self._table.lock:
            flow = self._table.flows.get(flow_id)
            if flow is None:
                return None  # a late report of a flow that ended, or of one never run here
            if flow.runtime.finishing and _same_failure(flow.record.failure, report):
                return None  # recorded already, from the job-ended event that reported it too
        report.flow_id = flow_id
        self._store.add_failure(report)
        self._metrics.panics.labels(report.progdef, FailureKind.Name(report.kind)).inc()
        self._finish(flow_id, FlowState.FAILED, report, record=False)
        return self._store.when_written

    def _on_export(
        self, flow_id: str, export: str, body: bytes, properties: pika.BasicProperties
    ) -> AckLater | None:
        """An export frame: acked once the items it kept are stored. One holding offloaded
        items, and every later one of its flow until none waits, is read on the copies
        thread (exportcopies.py)."""
        if not self.owns(flow_id):
            return _not_ours  # for the flow's new owner, once the channel is reset
        if self._objects is None:
            return self._read(flow_id, export, body)[0]
        offloaded = _has_references(body)
        with self._table.lock:
            if offloaded or self._copies.waiting.get(flow_id):
                return self._copies.hand_over(
                    flow_id, partial(self._copy_then_read, flow_id, export, body)
                )
        return self._read(flow_id, export, body)[0]

    def _copy_then_read(self, flow_id: str, export: str, body: bytes) -> AckLater | None:
        """On the copies thread: keep the frame's offloaded items, then read it; delete the
        copies of items the flow's record does not keep (past its cap, or a flow ended)."""
        with self._table.lock:
            flow = self._table.flows.get(flow_id)
            stream = None if flow is None else flow.runtime.exports.get(export)
            wanted = (
                flow is not None
                and not flow.runtime.finishing
                and not flow.record.exports_truncated  # nothing more is kept
            )
        copied: list[str] = []
        error = ""
        if wanted and stream is not None:
            try:
                copied = copy_offloaded(
                    self._objects, body, flow_id=flow_id, export=export, source=stream.source
                )
            except DecodeError as e:
                error = str(e)
        try:
            later, kept = self._read(flow_id, export, body, error=error)
        finally:
            with self._table.lock:
                self._copies.read(flow_id)
        if kept is not None:
            self._delete(key for key in copied if key not in kept)
        return later

    def _read(
        self, flow_id: str, export: str, body: bytes, *, error: str = ""
    ) -> tuple[AckLater | None, set[str] | None]:
        """Read an export frame (or fail its flow with ``error``, found already).

        Returns:
            when it is stored, and the keys of the offloaded items the flow's record keeps
            (None for a frame read already: its items were kept or dropped then).
        """
        kept: set[str] | None = set()
        with self._table.lock:
            flow = self._table.flows.get(flow_id)
            if flow is None or flow.runtime.finishing:
                return None, kept
            read = None
            if not error:
                try:
                    read = read_frame(
                        flow.record,
                        flow.runtime,
                        export,
                        body,
                        cap_bytes=self._export_cap_bytes,
                        objects=self._objects,
                    )
                except DecodeError as e:  # a bug in the producer: it panics the flow
                    error = str(e)
                else:
                    kept = None  # unless read now
            if error:
                producer = flow.node(flow.runtime.exports[export].source.partition(".")[0])
            elif read is not None:  # else kept already, delivered again after a reconnection
                every, kept_now = read
                self._record(flow_id, export, body)
                self._store.save(flow.record, flow.runtime, kept_now)
                self._metrics.exported_items.inc(len(every))
                self._watchers.exports(flow_id, every)
                kept = {key for e in kept_now if (key := offloaded_key(e.value_json))}
            flow.exported_at = time.monotonic()
            done = flow.complete() and not flow.starting
        if error:
            self._fail(flow_id, FAILURE_KIND_PANIC, error, node=producer)
        elif done:
            self._finish(flow_id, FlowState.SUCCEEDED)
        return self._store.when_written, kept

    def _record(self, flow_id: str, export: str, body: bytes) -> None:
        """Hand a new export frame's items to the cache when its output is recorded from
        it (a cacheable output that runs, its first export): items past the export's caps
        are read all the same, only not kept with the record."""
        name = self._cache.recorded_export(flow_id, export) if self._cache else None
        if name is not None and self._cache is not None:
            frame = Frame.FromString(body)  # it parsed already
            self._cache.record(flow_id, name, list(frame.items), offloaded=bool(frame.offloaded))

    def _delete(self, keys: Iterable[str]) -> None:
        assert self._objects is not None
        for key in keys:
            try:
                self._objects.delete(key)
            except DagyoError as e:
                log.warning("an offloaded export not kept was not deleted: %s", e)

    def _on_recording(
        self, flow_id: str, name: str, body: bytes, properties: pika.BasicProperties
    ) -> AckLater | None:
        """A frame of a cacheable output's recording stream: checked as an export frame is,
        its items held by the cache; acked at once, but for the end, once it is stored."""
        with self._table.lock:
            flow = self._table.flows.get(flow_id)
            if flow is None or flow.runtime.finishing:
                return None
            stream = flow.runtime.recordings[name]
            held = self._cache is not None and self._cache.recording(flow_id)
            error = ""
            try:
                frame = decode_frame(body, export=f"cache.{name}", source=stream.source)
                # After a restart the recording is read to its end and dropped: its frames
                # before the restart were never counted.
                new = admit(stream, frame, body, f"recording of {name}") if held else True
            except DecodeError as e:  # a bug in the producer: it panics the flow
                error, new = str(e), False
            if not held and not error:
                stream.ended = stream.ended or frame.end_of_stream
            if new and held and self._cache is not None:
                items = list(frame.items)
                self._cache.record(flow_id, name, items, offloaded=bool(frame.offloaded))
            ended = not error and stream.ended
            if ended:
                self._store.save(flow.record, flow.runtime)
            done = flow.complete() and not flow.starting
        if error:
            self._fail(flow_id, FAILURE_KIND_PANIC, error, node=flow.node(name.split(".")[0]))
        elif done:
            self._finish(flow_id, FlowState.SUCCEEDED)
        return self._store.when_written if ended else None

    def _queue_lost(self, flow_id: str, queue: str) -> None:
        error = f"queue {queue} was deleted while the flow ran (by hand, or the broker lost it)"
        self._fail(flow_id, FAILURE_KIND_BROKER, error)


def _has_references(body: bytes) -> bool:
    """Whether an export frame holds offloaded items (False for one that does not parse:
    reading it says why)."""
    try:
        return bool(Frame.FromString(body).offloaded)
    except ProtobufDecodeError:
        return False


def _not_ours(then: Callable[[], None]) -> None:
    """Never acked here (see scheduler.service.lifecycle.not_ours)."""


def _same_failure(recorded: FailureReport, report: FailureReport) -> bool:
    """True when ``report`` is the failure already recorded (node, executor and kind)."""
    return (recorded.node, recorded.executor, recorded.kind) == (
        report.node,
        report.executor,
        report.kind,
    )
