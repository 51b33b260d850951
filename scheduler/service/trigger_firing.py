"""Firing triggers: an accepted CloudEvent becomes a flow, at most once per event.

:meth:`Firing.accept` matches an event against the triggers of its source, binds its
values and type-checks them with the trigger's flow (so an event of the wrong shape is
refused at once, naming the field), then hands it to its trigger's batch. A batch full
(``max_events``) or old enough (``max_wait_s``) is submitted through the servicer's own
``Submit`` as the trigger's tenant (quotas apply), each input given the list of the batch's
values. Each firing is recorded in SQLite (trigger, event source and id, flow ids, time):
the same event id from the same source never starts a second flow of a trigger, even
across restarts, since sources deliver at least once.

Events waiting (in batches or for a submitter) are bounded: past ``max_waiting`` an event
is refused as :class:`Busy` for its source to retry, so a burst waits at the source (or in
its AMQP queue) and is not lost.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from executor.errors import Busy, CallAborted, DagyoError, EventRefused, FiringFailed, FlowInvalid
from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.progdef import Progdef
from scheduler.flow.check import check_flow
from scheduler.flow.model import parse_flow
from scheduler.flow.overrides import apply_sets
from scheduler.service.auth import OPEN, ROLE_USER, Authenticator, Principal
from scheduler.service.tenancy import InProcessCall, visible_catalogue
from scheduler.service.triggers import InvalidTrigger, Trigger, attribute, bind, describe

log = logging.getLogger("dagyo.scheduler.triggers")

# Flows submitted at once; each Submit declares queues and publishes jobs on the broker.
SUBMITTERS = 4
# The firings of each trigger `dagyo triggers` shows.
LAST_FIRINGS = 5
# A batch that is due is looked for this often.
BATCH_TICK_S = 0.05
# Codes of a Submit refusal that may pass if the event comes again later.
_RETRYABLE = {"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "UNAVAILABLE"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trigger_firings (
    trigger TEXT NOT NULL,
    event_source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    flow_ids TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (trigger, event_source, event_id)
);
CREATE INDEX IF NOT EXISTS trigger_firings_by_time ON trigger_firings (trigger, time);
"""

Submit = Callable[[pb.SubmitRequest, Any], Any]


@dataclass
class _Batch:
    trigger: Trigger
    principal: Principal
    opened: float
    keys: list[tuple[str, str]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    futures: list[Future[list[str]]] = field(default_factory=list)


class FiringStore:
    """The firings of every trigger, in the scheduler's SQLite file (thread-safe)."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise DagyoError(f"cannot open the trigger firings in {path} ({e})") from e

    def flow_ids(self, trigger: str, source: str, event_id: str) -> list[str] | None:
        """The flows an event already started, or None when it never fired."""
        with self._lock:
            row = self._db.execute(
                "SELECT flow_ids FROM trigger_firings WHERE trigger=? AND event_source=? "
                "AND event_id=?",
                (trigger, source, event_id),
            ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def add(self, trigger: str, keys: list[tuple[str, str]], flow_ids: list[str]) -> None:
        """Record that the events ``keys`` (source, id) of a trigger started ``flow_ids``."""
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO trigger_firings VALUES (?, ?, ?, ?, ?)",
                [
                    (trigger, source, event_id, json.dumps(flow_ids), now)
                    for source, event_id in keys
                ],
            )

    def last(self, trigger: str) -> tuple[int, list[pb.TriggerFiring]]:
        """How many events a trigger took, and its last firings, newest first."""
        with self._lock:
            count = self._db.execute(
                "SELECT COUNT(*) FROM trigger_firings WHERE trigger=?", (trigger,)
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT event_id, event_source, flow_ids, time FROM trigger_firings "
                "WHERE trigger=? ORDER BY time DESC, rowid DESC LIMIT ?",
                (trigger, LAST_FIRINGS),
            ).fetchall()
        return int(count), [
            pb.TriggerFiring(event_id=i, event_source=s, flow_ids=json.loads(f), time=t)
            for i, s, f, t in rows
        ]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


class Firing:
    """The triggers of one scheduler, turning accepted events into flows.

    Args:
        triggers: the valid trigger files; ``invalid`` the refused ones (for the report).
        submit: the servicer's ``Submit``.
        catalogue: the current catalogue (events are type-checked against it).
        authenticator: whose token file gives a trigger's tenant its quotas.
        store: where firings are recorded.
        max_waiting: events accepted and not yet submitted, at most.
    """

    def __init__(
        self,
        *,
        triggers: list[Trigger],
        invalid: list[InvalidTrigger],
        submit: Submit,
        catalogue: Callable[[], Mapping[str, Progdef]],
        authenticator: Authenticator,
        store: FiringStore,
        max_waiting: int,
    ) -> None:
        self.triggers = triggers
        self.invalid = invalid
        self._submit = submit
        self._catalogue = catalogue
        self._authenticator = authenticator
        self._store = store
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}
        self._inflight: dict[tuple[str, str, str], Future[list[str]]] = {}
        self._waiting = 0
        self._ready: queue.Queue[_Batch | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._submitter, name=f"dagyo-trigger-submit-{n}", daemon=True)
            for n in range(SUBMITTERS)
        ]
        self._threads.append(
            threading.Thread(target=self._ticker, name="dagyo-trigger-batches", daemon=True)
        )

    def start(self) -> None:
        """Start submitting."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Submit the batches gathered so far, then stop."""
        self._stopping.set()
        with self._lock:
            for batch in self._batches.values():
                self._ready.put(batch)
            self._batches.clear()
        for _ in range(SUBMITTERS):
            self._ready.put(None)
        for thread in self._threads:
            thread.join()

    # --- events in ---------------------------------------------------------------------------

    def accept(
        self, event: Any, *, principal: Principal, trigger: str | None = None
    ) -> list[Future[list[str]]]:
        """Take one CloudEvent; one future per trigger it fires, each giving its flow ids.

        Args:
            principal: who sent it; it reaches only the triggers of its tenant.
            trigger: the trigger whose AMQP queue it came from; None for HTTP.

        Raises:
            EventRefused: it matches no trigger, or does not bind, or its values do not
                type-check with the trigger's flow.
            Busy: too many events wait already.
        """
        candidates = [
            t
            for t in self.triggers
            if (t.name == trigger if trigger else t.amqp is None) and principal.sees(t.tenant)
        ]
        matching = [t for t in candidates if t.matches(event)]
        if not matching:
            known = "; ".join(f"{t.name} {t.mismatch(event)}" for t in candidates)
            raise EventRefused(
                f"{describe(event)} matches no trigger"
                + (f" ({known})" if known else ": there are no triggers for these events")
            )
        bound = [(t, bind(t, event)) for t in matching]
        for t, values in bound:
            self._check(t, values)
        source, event_id = attribute(event, "source") or "", attribute(event, "id") or ""
        futures = []
        with self._lock:
            fresh = [
                (t, values)
                for t, values in bound
                if (t.name, source, event_id) not in self._inflight
                and self._store.flow_ids(t.name, source, event_id) is None
            ]
            if self._stopping.is_set():
                raise Busy("the scheduler is stopping: send it again once it is back")
            if fresh and self._waiting + len(fresh) > self._max_waiting:
                raise Busy(
                    f"{self._waiting} events wait to start their flows "
                    "(DAGYO_TRIGGERS_WAITING): send it again shortly"
                )
            for t, values in bound:
                key = (t.name, source, event_id)
                if key in self._inflight:
                    futures.append(self._inflight[key])
                    continue
                done = self._store.flow_ids(*key)
                if done is not None:
                    already: Future[list[str]] = Future()
                    already.set_result(done)
                    futures.append(already)
                    continue
                futures.append(self._add(t, key, values))
        return futures

    def _check(self, trigger: Trigger, values: dict[str, Any]) -> None:
        principal = self._principal(trigger)
        sets = [f"{target}={json.dumps([value])}" for target, value in values.items()]
        source = f"{trigger.flow_path} (trigger {trigger.name})"
        try:
            flow = parse_flow(apply_sets(trigger.flow_text, sets, source=source), source=source)
            check_flow(flow, visible_catalogue(self._catalogue(), principal), source=source)
        except FlowInvalid as e:
            raise EventRefused("\n".join(e.problems)) from None

    def _add(
        self, trigger: Trigger, key: tuple[str, str, str], values: dict[str, Any]
    ) -> Future[list[str]]:
        """Add an event to its trigger's batch (holding the lock)."""
        batch = self._batches.get(trigger.name)
        if batch is None:
            batch = _Batch(trigger, self._principal(trigger), time.monotonic())
            self._batches[trigger.name] = batch
        future: Future[list[str]] = Future()
        batch.keys.append(key[1:])
        batch.values.append(values)
        batch.futures.append(future)
        self._inflight[key] = future
        self._waiting += 1
        if len(batch.keys) >= trigger.max_events or trigger.max_wait_s == 0:
            del self._batches[trigger.name]
            self._ready.put(batch)
        return future

    def _principal(self, trigger: Trigger) -> Principal:
        """Whom a trigger's flows belong to: its tenant, with the quotas of its token."""
        tokens = self._authenticator.tokens
        if tokens is None:
            return OPEN
        for principal in tokens.table().values():
            if principal.tenant == trigger.tenant:
                return Principal(tenant=trigger.tenant, role=ROLE_USER, quotas=principal.quotas)
        raise EventRefused(
            f"trigger {trigger.name}: tenant {trigger.tenant!r} has no token in DAGYO_TOKENS: "
            "give it one, or change the trigger's tenant"
        )

    # --- flows out ---------------------------------------------------------------------------

    def _ticker(self) -> None:
        while not self._stopping.wait(BATCH_TICK_S):
            now = time.monotonic()
            with self._lock:
                for name, batch in list(self._batches.items()):
                    if now - batch.opened >= batch.trigger.max_wait_s:
                        del self._batches[name]
                        self._ready.put(batch)

    def _submitter(self) -> None:
        while True:
            batch = self._ready.get()
            if batch is None:
                return
            try:
                flow_ids = [self._fire(batch)]
            except FiringFailed as e:
                self._settle(batch, error=e)
            except Exception as e:  # a bug must not leave the event's source waiting
                log.exception("trigger %s: firing failed", batch.trigger.name)
                self._settle(batch, error=FiringFailed(str(e), retryable=True))
            else:
                self._settle(batch, flow_ids=flow_ids)

    def _fire(self, batch: _Batch) -> str:
        trigger = batch.trigger
        sets = [
            f"{target}={json.dumps([values[target] for values in batch.values])}"
            for target in trigger.sets
        ]
        request = pb.SubmitRequest(
            flow_json=trigger.flow_text,
            source=f"{trigger.flow_path} (trigger {trigger.name})",
            set=sets,
        )
        try:
            response = self._submit(request, InProcessCall(batch.principal))
        except CallAborted as e:
            raise FiringFailed(
                f"trigger {trigger.name}: the scheduler refused its flow: {e.details}",
                retryable=e.code.name in _RETRYABLE,
            ) from None
        if response.problems or not response.flow_id:
            raise FiringFailed("\n".join(response.problems), retryable=False)
        flow_id = str(response.flow_id)
        self._store.add(trigger.name, batch.keys, [flow_id])
        log.info(
            "trigger %s fired: %d event(s) started flow %s", trigger.name, len(batch.keys), flow_id
        )
        return flow_id

    def _settle(
        self,
        batch: _Batch,
        *,
        flow_ids: list[str] | None = None,
        error: FiringFailed | None = None,
    ) -> None:
        with self._lock:
            for source, event_id in batch.keys:
                self._inflight.pop((batch.trigger.name, source, event_id), None)
            self._waiting -= len(batch.keys)
        for future in batch.futures:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(list(flow_ids or []))

    # --- the report --------------------------------------------------------------------------

    def report(self, principal: Principal) -> list[pb.Trigger]:
        """Every trigger the caller may see, valid or not, with its last firings."""
        rows = []
        for trigger in self.triggers:
            if not principal.sees(trigger.tenant):
                continue
            fired, firings = self._store.last(trigger.name)
            rows.append(
                pb.Trigger(
                    name=trigger.name,
                    file=str(trigger.file),
                    flow=str(trigger.flow_path),
                    events=trigger.events,
                    match=" ".join(f"{k}={v}" for k, v in trigger.match.items()),
                    tenant=trigger.tenant,
                    firings=firings,
                    fired=fired,
                )
            )
        if principal.admin:  # an invalid file's tenant is unknown: operators see them
            rows += [
                pb.Trigger(name=t.name, file=str(t.file), problems=t.problems) for t in self.invalid
            ]
        return sorted(rows, key=lambda row: row.name)
