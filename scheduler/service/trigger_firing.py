"""Firing triggers: an accepted CloudEvent becomes a flow, at most once per event.

:meth:`Firing.accept` matches an event against the triggers of its source, binds its
values and type-checks them with the trigger's flow (so an event of the wrong shape is
refused at once, naming the field), then hands it to its trigger's batch. A batch full
(``max_events``) or old enough (``max_wait_s``) is submitted through the flow service as
the trigger's tenant (quotas apply), each input given the list of the batch's
values. Each firing is recorded in the store (trigger, event source and id, flow ids, time):
the same event id from the same source never starts a second flow of a trigger, even
across restarts, since sources deliver at least once.

An event of a batching trigger (``max_events`` > 1 and ``max_wait_s`` > 0) is answered as
soon as it is accepted, so one sender's events in a row share a batch as concurrent ones do;
from then on the firing owns it: it is kept in the store until its flow starts (a restart
starts its batch again), and a batch whose flow could not start yet is tried again later.

Events waiting (in batches or for a submitter) are bounded: past ``max_waiting`` an event
is refused as :class:`Busy` for its source to retry, so a burst waits at the source (or in
its AMQP queue) and is not lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from executor.core.errors import Busy, EventRefused, FiringFailed, FlowInvalid
from executor.core.progdef import Progdef
from scheduler.flow.check import check_flow
from scheduler.flow.overrides import apply_sets
from scheduler.flow.parse import parse_flow
from scheduler.service.auth import OPEN, ROLE_USER, Authenticator, Principal
from scheduler.service.flowservice import REFUSALS, RETRYABLE
from scheduler.service.limits import capped_problems, refusal
from scheduler.service.store import TriggerFirings
from scheduler.service.tenancy import visible_catalogue
from scheduler.service.triggers import InvalidTrigger, Trigger, attribute, bind, describe

log = logging.getLogger("dagyo.scheduler.triggers")

# Flows submitted at once; each Submit declares queues and publishes jobs on the broker.
SUBMITTERS = 4
# A batch that is due is looked for this often.
BATCH_TICK_S = 0.05
# A batch whose flow could not start yet (its events answered already) is tried again
# after this wait, doubled at each refusal up to the longest.
RETRY_FIRST_S = 1.0
RETRY_LONGEST_S = 30.0


class Submit(Protocol):
    """Starts a flow as a principal's (the flow service's ``submit``)."""

    def __call__(
        self, principal: Principal, flow_json: str, *, source: str, sets: Sequence[str]
    ) -> str:
        """Check and start the flow; its flow id.

        Raises:
            FlowInvalid: the flow with the batch's values fails its checks.
            DagyoError: any other refusal (a quota, no executor, the broker away).
        """
        ...


@dataclass
class _Batch:
    trigger: Trigger
    principal: Principal
    opened: float
    keys: list[tuple[str, str]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    futures: list[Future[list[str]]] = field(default_factory=list)
    retry_s: float = RETRY_FIRST_S


class Accepted(NamedTuple):
    """An event taken by one trigger: the future of the flow ids it starts."""

    trigger: Trigger
    future: Future[list[str]]


class Firing:
    """The triggers of one scheduler, turning accepted events into flows.

    Args:
        triggers: the valid trigger files; ``invalid`` the refused ones (for the report).
        submit: starts a flow (the flow service's ``submit``).
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
        store: TriggerFirings,
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
        self._retrying: list[tuple[float, _Batch]] = []
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._submitter, name=f"dagyo-trigger-submit-{n}", daemon=True)
            for n in range(SUBMITTERS)
        ]
        self._threads.append(
            threading.Thread(target=self._ticker, name="dagyo-trigger-batches", daemon=True)
        )

    def start(self) -> None:
        """Start submitting, after taking back the batches a previous run left unstarted."""
        by_name = {t.name: t for t in self.triggers}
        with self._lock:
            for name, key, values in self._store.waiting():
                trigger = by_name.get(name)
                if trigger is None or not trigger.batches:
                    log.warning(
                        "trigger %s: event %s from %s waited in a batch, but the trigger no "
                        "longer batches: its flow is not started",
                        name,
                        key[1],
                        key[0],
                    )
                    self._store.unbatched(name, [key])
                    continue
                self._add(trigger, (name, *key), values, kept=True)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Submit the batches gathered so far, then stop."""
        self._stopping.set()
        with self._lock:
            for batch in self._batches.values():
                self._ready.put(batch)
            self._batches.clear()
            for _, batch in self._retrying:  # a last try; unstarted, they wait in the store
                self._ready.put(batch)
            self._retrying.clear()
        for _ in range(SUBMITTERS):
            self._ready.put(None)
        for thread in self._threads:
            thread.join()

    # --- events in ---------------------------------------------------------------------------

    def accept(
        self, event: Any, *, principal: Principal, trigger: str | None = None
    ) -> list[Accepted]:
        """Take one CloudEvent; one :class:`Accepted` per trigger it fires, whose future
        gives its flow ids.

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
        accepted = []
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
                    accepted.append(Accepted(t, self._inflight[key]))
                    continue
                done = self._store.flow_ids(*key)
                if done is not None:
                    already: Future[list[str]] = Future()
                    already.set_result(done)
                    accepted.append(Accepted(t, already))
                    continue
                accepted.append(Accepted(t, self._add(t, key, values)))
        return accepted

    def status(self, source: str, event_id: str, principal: Principal) -> dict[str, list[str]]:
        """What became of an event, over the triggers the caller sees: ``flow_ids`` it
        started and the triggers whose batch it still ``waits`` in (both empty: unknown)."""
        flow_ids: list[str] = []
        waiting: list[str] = []
        with self._lock:
            for t in self.triggers:
                if not principal.sees(t.tenant):
                    continue
                if (t.name, source, event_id) in self._inflight:
                    waiting.append(t.name)
                else:
                    flow_ids += self._store.flow_ids(t.name, source, event_id) or []
        return {"flow_ids": flow_ids, "waiting": waiting}

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
        self,
        trigger: Trigger,
        key: tuple[str, str, str],
        values: dict[str, Any],
        *,
        kept: bool = False,
    ) -> Future[list[str]]:
        """Add an event to its trigger's batch (holding the lock).

        Args:
            kept: it is in the store's batched events already (taken back at start).
        """
        if trigger.batches and not kept:
            self._store.batched(trigger.name, key[1:], values)
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
                due = [batch for when, batch in self._retrying if when <= now]
                self._retrying = [(w, b) for w, b in self._retrying if w > now]
                for batch in due:
                    self._ready.put(batch)

    def _submitter(self) -> None:
        while True:
            batch = self._ready.get()
            if batch is None:
                return
            try:
                flow_ids = [self._fire(batch)]
            except FiringFailed as e:
                if batch.trigger.batches and e.retryable and not self._stopping.is_set():
                    self._retry(batch, e)  # its events were answered: the sender won't
                    continue
                if batch.trigger.batches and not e.retryable:
                    log.error("trigger %s: its batch's flow was refused: %s", batch.trigger.name, e)
                    self._store.unbatched(batch.trigger.name, batch.keys)
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
        try:
            flow_id = self._submit(
                batch.principal,
                trigger.flow_text,
                source=f"{trigger.flow_path} (trigger {trigger.name})",
                sets=sets,
            )
        except FlowInvalid as e:
            raise FiringFailed("\n".join(capped_problems(e.problems)), retryable=False) from None
        except REFUSALS as e:
            raise FiringFailed(
                f"trigger {trigger.name}: the scheduler refused its flow: {refusal(e)}",
                retryable=isinstance(e, RETRYABLE),
            ) from None
        self._store.add(trigger.name, batch.keys, [flow_id])
        log.info(
            "trigger %s fired: %d event(s) started flow %s", trigger.name, len(batch.keys), flow_id
        )
        return flow_id

    def _retry(self, batch: _Batch, error: FiringFailed) -> None:
        log.warning(
            "trigger %s: its batch's flow could not start yet (%s): trying again in %gs",
            batch.trigger.name,
            error,
            batch.retry_s,
        )
        with self._lock:
            self._retrying.append((time.monotonic() + batch.retry_s, batch))
        batch.retry_s = min(batch.retry_s * 2, RETRY_LONGEST_S)

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
