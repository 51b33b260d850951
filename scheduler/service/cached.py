"""The cache of deterministic results on the cluster (docs/cache.md): which nodes of a
submitted flow are cached, replaying them, and recording the others.

At submit, every cacheable node whose entry for the caller's tenant is whole (each output
stream's size and SHA-256 checked) is *cached*: its job is not published. A cached node
with an export, or a consumer that runs, is replayed by the scheduler into those queues
(scheduler.service.replay); one whose consumers are all cached and that has no export needs
nothing, so a region cached up to its exports runs no job at all. A damaged entry is
dropped, a line says so, and its node runs.

Every other cacheable node runs, and each of its outputs is recorded: from the frames of
its first export when it has one (the scheduler reads those whole already), else from a
hidden recording queue that the scheduler reads as it reads an export (the producer fans
out to it as to any consumer); such a queue is one of the flow's queues, cached node or
not, so they are declared ahead with the rest (spares.py). The items are held in memory,
up to ``DAGYO_CACHE_MAX_BYTES`` per output, and kept in the store only when the flow
succeeds; a flow that fails, is cancelled or exceeds its deadline leaves no entry. After a
restart the recordings of a running flow are read to their end and dropped: its results
are not cached.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

from executor.core.constants import stream_queue
from executor.core.errors import DagyoError
from executor.core.progdef import Progdef
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_BROKER
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.cache.folder import Entry, Output
from scheduler.constants import ENV_CACHE_BYTES
from scheduler.flow.cache_key import cache_keys
from scheduler.flow.model import CheckedFlow, Endpoint
from scheduler.flow.plan import Plan
from scheduler.service.config import CacheBounds
from scheduler.service.flows import FlowParts
from scheduler.service.flowstate import ExportStream
from scheduler.service.recording import Recording, recorded, recording_queue
from scheduler.service.replay import Replayer
from scheduler.service.store import CachedResults

log = logging.getLogger("dagyo.cache")


@dataclass
class Prepared:
    """What the cache decided for one submitted flow.

    Attributes:
        plan: the flow's plan, its recording queues added.
        cached: the nodes not run.
        replays: cached node -> its job descriptor (where its outputs go) and its streams.
        recordings: ``node.port`` -> the recording stream of a cacheable output that runs
            and has no export.
        exported: export -> the ``node.port`` of a cacheable output that runs, recorded
            from that export's frames (its first export, so each output is held once).
        entries: node -> the entry its recordings make, for the nodes recorded.
        items: cached node -> the items of each of its outputs.
    """

    plan: Plan
    cached: frozenset[str] = frozenset()
    replays: dict[str, tuple[Job, dict[str, bytes]]] = field(default_factory=dict)
    recordings: dict[str, ExportStream] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    items: dict[str, dict[str, int]] = field(default_factory=dict)


class ClusterCache:
    """The scheduler's cache: decides at submit, replays, records, commits at success.

    Args:
        results: the entries, in the scheduler's store.
        parts: the flows, their store, the broker and the metrics.
        bounds: the cache's size bounds.
        fail: ends a flow for a reason the scheduler found (a replay that failed).
    """

    def __init__(
        self,
        results: CachedResults,
        parts: FlowParts,
        *,
        bounds: CacheBounds,
        fail: Callable[..., None],
    ) -> None:
        self.results = results
        self.bounds = bounds
        self._parts = parts
        self._fail = fail
        self._replayer = Replayer(parts.broker.url)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[dict[str, Entry], dict[str, Recording]]] = {}
        self._stops: dict[str, threading.Event] = {}
        self._exported: dict[str, dict[str, str]] = {}  # flow -> export -> node.port
        # Bytes of every flow's recordings held in memory: at most DAGYO_CACHE_BYTES.
        self._held = 0

    # --- at submit -------------------------------------------------------------------------

    def prepare(
        self,
        tenant: str,
        checked: CheckedFlow,
        plan: Plan,
        *,
        refresh: bool = False,
        keys: Mapping[str, str] | None = None,
    ) -> Prepared:
        """Decide what each cacheable node of a planned flow does, and rewire the plan.

        Args:
            refresh: run every node (``--no-cache``), still recording the cacheable ones.
            keys: the flow's cache keys, when known already.
        """
        keys = cache_keys(checked) if keys is None else keys
        if not keys:
            return Prepared(plan)
        hits = {} if refresh else self._hits(tenant, checked, keys)
        metrics = self._parts.metrics
        for node in keys:
            if node in hits:
                metrics.cache_hits.labels(checked.progdefs[node].name).inc()
            elif not refresh:
                metrics.cache_misses.labels(checked.progdefs[node].name).inc()
        now = time.time()
        for node in hits:
            self.results.touch(tenant, keys[node], now)
        jobs = {job.descriptor.node: job for job in plan.jobs}
        unread = {
            stream_queue(plan.flow_id, node, port)
            for node in hits
            for port in checked.progdefs[node].inputs
        }
        prepared = Prepared(plan, cached=frozenset(hits))
        for node, (entry, _) in hits.items():
            prepared.items[node] = {port: out.items for port, out in entry.outputs.items()}
        for node, job in jobs.items():
            for spec in job.descriptor.outputs.values():
                kept = [queue for queue in spec.queues if queue not in unread]
                del spec.queues[:]
                spec.queues.extend(kept)
            if node in hits:
                outputs = job.descriptor.outputs
                if any(outputs[port].queues for port in outputs):
                    prepared.replays[node] = (job.descriptor, hits[node][1])
            elif node in keys:
                prepared.entries[node] = _entry(tenant, keys[node], job.progdef, node, plan)
                for port, spec in job.descriptor.outputs.items():
                    name = f"{node}.{port}"
                    exports = checked.exports_of(Endpoint(node, port))
                    if exports:  # read whole already: recorded from its first export
                        prepared.exported[exports[0]] = name
                        continue
                    queue = recording_queue(plan.flow_id, Endpoint(node, port))
                    spec.queues.append(queue)
                    prepared.recordings[name] = ExportStream(
                        queue, spec.typename, name, token=spec.token
                    )
        # A cached node's recording queues too: the flow's queues stay those of its shape
        # (declared ahead), and are all deleted at its end.
        queues = tuple(recording_queue(plan.flow_id, o) for o in recorded(checked, keys))
        prepared.plan = replace(plan, stream_queues=plan.stream_queues + queues)
        return prepared

    def _hits(
        self, tenant: str, checked: CheckedFlow, keys: Mapping[str, str]
    ) -> dict[str, tuple[Entry, dict[str, bytes]]]:
        """The cached nodes of a flow, each with its entry and, when it is replayed (it has
        an export, or a consumer that runs), its streams, checked. Only what is replayed is
        read whole; a damaged entry is dropped and its node runs, so the nodes above it
        that it reads from are replayed in their turn."""
        there = self.results.have(tenant, list(keys.values()))
        cached = {node for node, key in keys.items() if key in there}
        hits: dict[str, tuple[Entry, dict[str, bytes]]] = {}
        settled = False
        while not settled:
            settled = True
            for node in sorted(cached):
                replayed = _replayed(checked, cached, node)
                if node in hits and (hits[node][1] or not replayed):
                    continue
                ports = sorted(checked.progdefs[node].outputs) if replayed else []
                found = self._whole(tenant, keys[node], ports, streams=replayed)
                if found is None:  # gone meanwhile, or damaged: it runs
                    cached.discard(node)
                    hits.pop(node, None)
                    settled = False
                    break
                hits[node] = found
        return hits

    def _whole(
        self, tenant: str, key: str, ports: list[str], *, streams: bool
    ) -> tuple[Entry, dict[str, bytes]] | None:
        """The entry of ``key``, with every output's stream (``streams``) checked; a damaged
        one is dropped (its node runs)."""
        found = self.results.get(tenant, key, streams=streams)
        if found is None:
            return None
        entry, streams_of = found
        for port in ports:
            output, data = entry.outputs.get(port), streams_of.get(port)
            if output is None or data is None or not _checks(output, data):
                log.warning(
                    "cache entry %s (progdef %s, node %s): output %s is truncated or corrupted "
                    "(its hash differs): dropped, the node runs",
                    key,
                    entry.progdef,
                    entry.node,
                    port,
                )
                self.results.drop(tenant, key)
                return None
        return found

    # --- while the flow runs ---------------------------------------------------------------

    def begin(self, flow_id: str, prepared: Prepared) -> None:
        """Start holding the recordings of a flow about to start."""
        with self._lock:
            self._stops[flow_id] = threading.Event()
            if prepared.entries:
                names = [*prepared.recordings, *prepared.exported.values()]
                recordings = {name: Recording() for name in names}
                self._pending[flow_id] = (dict(prepared.entries), recordings)
                self._exported[flow_id] = dict(prepared.exported)

    def recording(self, flow_id: str) -> bool:
        """True while the flow's recordings are held (not after a restart)."""
        with self._lock:
            return flow_id in self._pending

    def recorded_export(self, flow_id: str, export: str) -> str | None:
        """The ``node.port`` recorded from the frames of ``export``, while it is held."""
        with self._lock:
            return self._exported.get(flow_id, {}).get(export)

    def record(self, flow_id: str, name: str, items: list[bytes], *, offloaded: bool) -> None:
        """Hold the items of one new frame of the recording ``name`` (``node.port``)."""
        with self._lock:
            pending = self._pending.get(flow_id)
            recording = pending[1].get(name) if pending is not None else None
            if recording is None or recording.dropped:
                return
            if offloaded:
                recording.dropped = "it carries offloaded items"
                self._held += recording.drop()
            else:
                room = self.bounds.max_bytes - self._held
                self._held += recording.add(items, self.bounds.max_output_bytes, room)
            why = recording.dropped
        if why:
            log.warning("flow %s: output %s is not cached: %s", flow_id, name, why)

    def replay(self, flow_id: str, prepared: Prepared) -> None:
        """Start replaying the flow's cached nodes that need it, a thread each."""
        with self._lock:
            stop = self._stops.setdefault(flow_id, threading.Event())
        for node, (descriptor, streams) in prepared.replays.items():
            run = partial(self._replay, flow_id, node, descriptor, streams, stop)
            threading.Thread(target=run, name=f"dagyo-replay-{node}", daemon=True).start()

    def _replay(
        self,
        flow_id: str,
        node: str,
        descriptor: Job,
        streams: dict[str, bytes],
        stop: threading.Event,
    ) -> None:
        sent: dict[str, int] = {}
        errors: list[str] = []

        def send(port: str) -> None:
            output = descriptor.outputs[port]
            try:
                sent[port] = self._replayer.send(output, streams[port], stop=stop)
            except DagyoError as e:
                errors.append(f"replaying the cached output {node}.{port}: {e}")
                return
            self._parts.metrics.cache_replayed_bytes.inc(len(streams[port]))

        # Each output at once, as a consumer reading one before the other needs.
        threads = [
            threading.Thread(target=send, args=(port,), daemon=True)
            for port in descriptor.outputs
            if descriptor.outputs[port].queues
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors and not stop.is_set():
            self._fail(flow_id, FAILURE_KIND_BROKER, errors[0])
        elif not errors:
            self._replayed(flow_id, node, sent)

    def _replayed(self, flow_id: str, node: str, sent: Mapping[str, int]) -> None:
        """A cached node's streams are all sent (its record counted them at submit)."""
        parts = self._parts
        with parts.table.lock:
            flow = parts.table.flows.get(flow_id)
            if flow is None or flow.runtime.finishing:
                return
            flow.replay_ended(node)
            progress = flow.node(node)
            if progress is not None:
                progress.ended = time.time()
            parts.store.save(flow.record, flow.runtime)
            parts.watchers.progress(flow_id, flow.record)

    # --- at the end ------------------------------------------------------------------------

    def ended(self, flow_id: str, *, succeeded: bool) -> None:
        """The flow ends: keep its whole recordings when it succeeded, else drop them; stop
        its replays."""
        with self._lock:
            pending = self._pending.pop(flow_id, None)
            self._exported.pop(flow_id, None)
            stop = self._stops.pop(flow_id, None)
            if pending is not None:
                self._held -= sum(r.size for r in pending[1].values())
        if stop is not None:
            stop.set()
        if pending is None or not succeeded:
            return
        entries, recordings = pending
        for node, entry in entries.items():
            ports = {
                n.partition(".")[2]: r for n, r in recordings.items() if n.startswith(f"{node}.")
            }
            if any(r.dropped for r in ports.values()):
                continue
            streams = {port: b"".join(r.chunks) for port, r in ports.items()}
            outputs = {
                port: Output(
                    items=ports[port].items,
                    bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
                for port, data in streams.items()
            }
            now = time.time()
            kept = replace(entry, outputs=outputs, made=now, last_used=now)
            try:
                if not self.results.put(kept, streams, max_bytes=self.bounds.max_bytes):
                    log.warning(
                        "flow %s: output of %s (%d bytes) is past %s: not cached",
                        flow_id,
                        node,
                        kept.size,
                        ENV_CACHE_BYTES,
                    )
            except DagyoError as e:
                log.warning("flow %s: the results of %s are not cached: %s", flow_id, node, e)

    def close(self) -> None:
        """Close the replays' connection."""
        self._replayer.close()


def _replayed(checked: CheckedFlow, cached: set[str], node: str) -> bool:
    """True when a cached node has an export, or a consumer that runs."""
    return any(
        checked.exports_of(Endpoint(node, port))
        or any(t.node not in cached for t in checked.consumers_of(Endpoint(node, port)))
        for port in checked.progdefs[node].outputs
    )


def _checks(output: Output, data: bytes) -> bool:
    return len(data) == output.bytes and hashlib.sha256(data).hexdigest() == output.sha256


def _entry(tenant: str, key: str, progdef: Progdef, node: str, plan: Plan) -> Entry:
    return Entry(
        key=key,
        progdef=progdef.name,
        version=progdef.version,
        node=node,
        flow=plan.flow_id,
        made=0.0,
        last_used=0.0,
        tenant=tenant,
    )
