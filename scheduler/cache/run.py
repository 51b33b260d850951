"""The cache's part in one embedded run: which nodes are replayed, which are recorded.

At the start, every cacheable node whose entry is whole is *cached*: it is not run. A
cached node with an export, or a consumer that runs, is replayed (a job that sends its
cached streams, in order, reading nothing); one whose consumers are all cached and that has
no export does nothing at all, so a region cached up to its exports runs no job. Every
other cacheable node runs and its outputs are recorded as they stream, through a copy of
each stream read by one recorder thread; the entries are committed only when the flow
succeeds.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from executor.core.constants import flow_queue, stream_queue
from executor.core.errors import DagyoError, Stopped
from executor.core.progdef import Progdef
from executor.inprocess import Exports, MemoryTransport, Program
from scheduler.cache.folder import Entry, FolderCache, Pending
from scheduler.constants import ENV_CACHE_MAX_BYTES
from scheduler.flow.cache_key import cache_keys
from scheduler.flow.model import CheckedFlow, Endpoint
from scheduler.flow.plan import Plan

_logger = logging.getLogger("dagyo.cache")


class RunCache:
    """Decides, from the cache, what each node of one run does, and records the rest.

    Args:
        refresh: run every node (``--no-cache``), still recording the cacheable ones.
    """

    def __init__(
        self, cache: FolderCache, checked: CheckedFlow, plan: Plan, *, refresh: bool = False
    ) -> None:
        self.cache = cache
        self.keys = cache_keys(checked)
        self.hits: dict[str, Entry] = {}
        if not refresh:
            for node, key in self.keys.items():
                if (entry := cache.lookup(key)) is not None:
                    self.hits[node] = entry
                    cache.touch(entry)
        self.replayed = {
            node
            for node in self.hits
            if any(
                checked.exports_of(Endpoint(node, port))
                or any(t.node not in self.hits for t in checked.consumers_of(Endpoint(node, port)))
                for port in checked.progdefs[node].outputs
            )
        }
        self.skipped = set(self.hits) - self.replayed
        self._stop = threading.Event()
        self._pending: dict[str, Pending] = {}
        self._recorded: list[tuple[str, str, str, str]] = []  # (node, port, queue, typename)
        self._thread: threading.Thread | None = None
        self._ok = True
        self._adjust(checked, plan)

    def _adjust(self, checked: CheckedFlow, plan: Plan) -> None:
        """Rewire the plan: nothing feeds a cached node, a replayed one reads nothing, and
        each output of a recorded node also goes to its recording queue."""
        unread = {
            stream_queue(plan.flow_id, node, port)
            for node in self.hits
            for port in checked.progdefs[node].inputs
        }
        for planned in plan.jobs:
            job, node = planned.descriptor, planned.descriptor.node
            for spec in job.outputs.values():
                kept = [queue for queue in spec.queues if queue not in unread]
                del spec.queues[:]
                spec.queues.extend(kept)
            if node in self.replayed:
                job.ClearField("inputs")
            elif node in self.keys and node not in self.hits:
                pending = self._pending[node] = self.cache.begin(
                    _entry(self.keys[node], planned.progdef, node, checked.flow.name)
                )
                for port, spec in job.outputs.items():
                    queue = flow_queue(plan.flow_id, f"cache.{node}.{port}")
                    spec.queues.append(queue)
                    pending.open(port)
                    self._recorded.append((node, port, queue, spec.typename))

    def program(self, node: str, progdef: Progdef) -> Program:
        """The program that replays a cached node: it sends each cached output stream."""
        entry = self.hits[node]

        def run(job: Any) -> None:
            def send(port: str) -> None:
                out = job.outputs[port]
                decode = out.message_class.FromString
                out.send_all(decode(item) for item in self.cache.items(entry, port))

            _each_at_once([functools.partial(send, port) for port in job.outputs])

        replayer = dataclasses.replace(progdef, style="stream", init="", secrets=(), errors="")
        return Program(replayer, run=run, init=None)

    def start(self, transport: MemoryTransport) -> None:
        """Start the recorder thread reading every recorded output's copy."""
        if not self._recorded:
            return
        exports = self._exports = Exports(transport, stop=self._stop)
        for node, port, queue, typename in self._recorded:
            exports.add(
                f"{node}.{port}", queue=queue, edge=f"{node}.{port} -> cache", typename=typename
            )
        self._thread = threading.Thread(target=self._record, name="cache-recorder", daemon=True)
        self._thread.start()

    def _record(self) -> None:
        told: set[str] = set()
        try:
            for name, item in self._exports:
                node, _, port = name.partition(".")
                if not self._pending[node].write(port, item.SerializeToString()) and (
                    name not in told
                ):
                    told.add(name)
                    _logger.warning(
                        "%s is past %s (%d bytes): not cached",
                        name,
                        ENV_CACHE_MAX_BYTES,
                        self.cache.settings.max_output_bytes,
                    )
        except (Stopped, DagyoError):
            self._ok = False

    def stop(self) -> None:
        """Stop recording (the flow failed): nothing will be committed."""
        self._ok = False
        self._stop.set()
        if self._thread is not None:
            self._exports.wake()

    def finish(self, *, succeeded: bool) -> None:
        """Commit every recording when the flow succeeded, else discard them all."""
        if self._thread is not None:
            if not succeeded:
                self.stop()
            self._thread.join()
        for pending in self._pending.values():
            if succeeded and self._ok:
                self.cache.commit(pending)
            else:
                pending.discard()


def _entry(key: str, progdef: Progdef, node: str, flow: str) -> Entry:
    now = time.time()
    return Entry(
        key=key,
        progdef=progdef.name,
        version=progdef.version,
        node=node,
        flow=flow,
        made=now,
        last_used=now,
    )


def _each_at_once(calls: list[Callable[[], None]]) -> None:
    """Call each in a thread of its own (one alone in this one): the outputs of a replayed
    node are sent side by side, as a consumer reading one before the other needs."""
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    errors: list[BaseException] = []

    def guarded(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
