"""The embedded runner: a whole flow in one process, on the in-memory transport.

It runs each job with the executor's own job code (``executor.inprocess.execute``); only the
transport differs from a cluster, so a flow behaves here as it will there. Frames carry the
messages themselves, not their bytes (see :mod:`executor.core.frames`): an item must not be
changed once it was sent. ``DAGYO_EMBEDDED_SERIALIZE=1`` serializes every item as a cluster
does and catches an item changed after it was sent.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor.core import offload
from executor.core.constants import FRAME_MAX_ITEMS
from executor.core.errors import DagyoError, Stopped
from executor.core.offload import Offload, default_objects_url, flow_prefix
from executor.inprocess import (
    Exports,
    Flusher,
    FrameForm,
    JobRun,
    MemoryTransport,
    Program,
    StreamSettings,
    execute,
    load_program,
)
from executor.pb.dagyo.v1.failure_pb2 import (
    FAILURE_KIND_CANCELLED,
    FAILURE_KIND_PANIC,
    FailureReport,
)
from scheduler.constants import ENV_EMBEDDED_SERIALIZE, MESSAGE_FRAME_MAX_ITEMS
from scheduler.flow.model import CheckedFlow
from scheduler.flow.plan import Plan, plan_flow

if TYPE_CHECKING:
    from scheduler.cache import FolderCache, RunCache

EXECUTOR_ID = "embedded"
# The scheduler package: its frames in a traceback are the runner's, not the author's.
_RUNNER = (str(Path(__file__).parent),)


@dataclass
class RunResult:
    """How an embedded run ended: ``succeeded`` or ``failed`` (with the first failure)."""

    state: str
    failure: FailureReport | None = None
    items_sent: dict[str, int] = field(default_factory=dict)
    # The nodes not run: their results came from the cache.
    cached: tuple[str, ...] = ()


class EmbeddedRunner:
    """Runs one checked flow in this process.

    Args:
        on_export: called in the calling thread with (export name, message) for every
            exported item, in the order each export's items were sent. The message is
            the one its job sent: do not change it.
        settings: frame batching and stream bounds (their ``frames`` is the runner's).
        serialize: serialize every item as a cluster does, checking that no item is
            changed once sent; None reads DAGYO_EMBEDDED_SERIALIZE (``1``: on).
        cache: the cache of deterministic results: cached nodes are replayed, cacheable
            ones recorded and committed when the flow succeeds (None: no cache).
        refresh: with ``cache``, run every node all the same (``--no-cache``).

    Raises:
        DagyoError: when DAGYO_EMBEDDED_SERIALIZE is neither 1 nor 0.
    """

    def __init__(
        self,
        checked: CheckedFlow,
        *,
        on_export: Callable[[str, Any], None],
        settings: StreamSettings | None = None,
        serialize: bool | None = None,
        cache: FolderCache | None = None,
        refresh: bool = False,
    ) -> None:
        if serialize is None:
            serialize = serialize_from_env()
        if settings is None:
            # Frames of messages stay small: the items a job makes are still in the CPU's
            # cache when the next job reads them. Serialized ones are framed as on a cluster.
            settings = StreamSettings(
                frame_max_items=FRAME_MAX_ITEMS if serialize else MESSAGE_FRAME_MAX_ITEMS
            )
        form = FrameForm.CHECKED if serialize else FrameForm.MESSAGES
        self.settings = dataclasses.replace(settings, frames=form)
        if serialize and self.settings.offload.store is None:
            # Serialized items are offloaded as on a cluster: to DAGYO_OBJECTS, else a
            # folder of the user's cache. Frames of messages carry every item as it is.
            offload = Offload.from_env(default_url=default_objects_url())
            self.settings = dataclasses.replace(self.settings, offload=offload)
        self.plan: Plan = plan_flow(checked, flow_id=uuid.uuid4().hex[:12])
        self._export_sources = {name: str(source) for name, source in checked.flow.exports.items()}
        self.transport = MemoryTransport(max_frames=self.settings.max_frames)
        self._on_export = on_export
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._failure: FailureReport | None = None
        self._cache: RunCache | None = None
        if cache is not None:
            from scheduler.cache import RunCache

            self._cache = RunCache(cache, checked, self.plan, refresh=refresh)
        skipped = self._cache.skipped if self._cache is not None else set()
        self._jobs = [job for job in self.plan.jobs if job.descriptor.node not in skipped]
        self.runs = [JobRun(planned.descriptor) for planned in self._jobs]
        self._programs: dict[str, Program] = {}
        self._exports: Exports | None = None

    def progress(self) -> dict[str, int]:
        """Items sent so far per ``node.port``."""
        return {
            f"{run.descriptor.node}.{port}": sent
            for run in self.runs
            for port, sent in run.items_sent().items()
        }

    def progress_line(self) -> dict[str, str]:
        """What the progress line shows: items sent so far per output ``node.port``, and
        for a sink (a node with no output) items received per input: how far it got."""
        counts = {}
        replayed = self._cache.replayed if self._cache is not None else set()
        for node in sorted(self._cache.skipped if self._cache is not None else ()):
            counts[node] = "cached"
        for run in self.runs:
            if run.descriptor.node in replayed:
                for port, sent in run.items_sent().items():
                    counts[f"{run.descriptor.node}.{port}"] = f"{sent} cached"
            elif run.descriptor.outputs:
                for port, sent in run.items_sent().items():
                    counts[f"{run.descriptor.node}.{port}"] = str(sent)
            else:
                for port, received in run.items_received().items():
                    counts[f"{run.descriptor.node}.{port}"] = f"{received} received"
        return counts

    def run(self) -> RunResult:
        """Run every job to its end, delivering exports; stop all at the first panic.

        A KeyboardInterrupt stops every job and ends the run as failed (cancelled).

        Raises:
            DagyoError: a progdef's ``init`` failed (it runs before the first job), or
                its declared secrets are not set.
        """
        self._start_programs()
        flusher = Flusher(linger_s=self.settings.linger_s)
        exports = self._attach_exports()
        if self._cache is not None:
            self._cache.start(self.transport)
        threads = [
            threading.Thread(
                target=self._run_job,
                args=(run, planned.progdef, flusher),
                name=f"job-{run.descriptor.node}",
                daemon=True,
            )
            for run, planned in zip(self.runs, self._jobs, strict=True)
        ]
        started: list[threading.Thread] = []
        try:
            for thread in threads:
                thread.start()
                started.append(thread)
            self._deliver_exports(exports)
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self._fail(
                FailureReport(
                    flow_id=self.plan.flow_id,
                    executor=EXECUTOR_ID,
                    error="interrupted",
                    kind=FAILURE_KIND_CANCELLED,
                )
            )
            for thread in started:
                thread.join()
        finally:
            flusher.close()
            self._delete_objects()
            if self._cache is not None:
                # Whatever ends the run, its recordings are committed or discarded here.
                self._cache.finish(succeeded=self._failure is None)
        state = "failed" if self._failure is not None else "succeeded"
        cached: tuple[str, ...] = ()
        if self._cache is not None:
            cached = tuple(node for node in self.plan_order if node in self._cache.hits)
        return RunResult(
            state=state, failure=self._failure, items_sent=self.progress(), cached=cached
        )

    @property
    def plan_order(self) -> tuple[str, ...]:
        """Every node of the flow, producers first."""
        return tuple(planned.descriptor.node for planned in self.plan.jobs)

    def _delete_objects(self) -> None:
        """Delete what the flow offloaded, whatever its end (a store that fails is said on
        stderr and left: the run's outcome is the flow's)."""
        store = self.settings.offload.store
        if store is None:
            return
        try:
            store.delete_prefix(flow_prefix(self.plan.flow_id))
        except DagyoError as e:
            print(f"dagyo: the flow's offloaded items were not deleted: {e}", file=sys.stderr)

    def _start_programs(self) -> None:
        """Run each progdef's ``init`` before any job, as an executor does at start-up.

        A progdef whose code does not import is left to its jobs, which fail the flow
        naming their node.
        """
        for planned in self._jobs:
            if self._cache is not None and planned.descriptor.node in self._cache.hits:
                continue
            try:
                program = self._program(planned.progdef)
            except DagyoError:
                continue
            program.start()

    def _program(self, progdef: Any) -> Program:
        with self._lock:
            if progdef.name not in self._programs:
                self._programs[progdef.name] = load_program(progdef)
            return self._programs[progdef.name]

    def _run_job(self, run: JobRun, progdef: Any, flusher: Flusher) -> None:
        node = run.descriptor.node
        if self._cache is not None and node in self._cache.replayed:
            cache = self._cache

            def load() -> Program:
                return cache.program(node, progdef)
        else:

            def load() -> Program:
                return self._program(progdef)

        failure = execute(
            run,
            load,
            self.transport,
            flusher=flusher,
            settings=self.settings,
            executor_id=EXECUTOR_ID,
            runner=_RUNNER,
        )
        if failure is not None:
            self._fail(failure)

    def _fail(self, failure: FailureReport) -> None:
        with self._lock:
            if self._failure is not None:
                return
            self._failure = failure
        self._stop.set()
        if self._cache is not None:
            self._cache.stop()
        for run in self.runs:
            run.stop_for_flow("the flow failed")
        if self._exports is not None:
            self._exports.wake()

    def _attach_exports(self) -> Exports:
        exports = self._exports = Exports(self.transport, stop=self._stop)
        for name, queue in self.plan.export_queues.items():
            exports.add(
                name,
                queue=queue,
                edge=f"{self._export_sources[name]} -> export {name}",
                typename=self.plan.export_types[name],
                fetch=functools.partial(
                    offload.fetch, self.settings.offload.store, flow_id=self.plan.flow_id
                ),
            )
        return exports

    def _deliver_exports(self, exports: Exports) -> None:
        try:
            for name, item in exports:
                self._on_export(name, item)
        except Stopped:
            pass
        except DagyoError as e:  # an export's item does not decode, or was changed
            self._fail(
                FailureReport(
                    flow_id=self.plan.flow_id,
                    executor=EXECUTOR_ID,
                    error=f"{type(e).__name__}: {e}",
                    kind=FAILURE_KIND_PANIC,
                )
            )


def serialize_from_env() -> bool:
    """Whether DAGYO_EMBEDDED_SERIALIZE asks to serialize every item (``1``) or not.

    Raises:
        DagyoError: naming the variable, when it is set to neither 1 nor 0.
    """
    raw = os.environ.get(ENV_EMBEDDED_SERIALIZE, "")
    if raw not in ("", "0", "1"):
        raise DagyoError(
            f"{ENV_EMBEDDED_SERIALIZE}={raw!r}: set it to 1 or 0 (1 serializes every item "
            "as a cluster does, to test that a progdef never changes an item it sent)"
        )
    return raw == "1"
