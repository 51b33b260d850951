"""Gang admission: a flow's jobs are published only when every one of them can start at once.

Every job of a flow runs at the same time (each streams to the next through bounded
queues), so a flow whose jobs only partly start can block for ever, holding the slots
that its missing jobs, and other users' flows, wait for. The scheduler therefore admits a
flow only when each progdef version it uses has free job slots for all of its jobs:

* a version's **capacity** is the sum of the slots its live executors announce in their
  heartbeats, or, for a progdef an autoscaler serves, ``scaling.max_executors ×
  max_jobs``; an executor that announces no slots makes the capacity unknown, and a flow
  is never held for an unknown capacity;
* its **used** slots are the jobs of admitted flows that have not ended;
* waiting flows are admitted first come, first served: a flow that waits holds back every
  later flow that needs one of its progdef versions, so a big flow is not starved by a
  stream of small ones.

A flow that could never fit is refused at submit (:func:`never_fits`); one that waits is
``pending`` with the reason in its record (``waiting for 4 slots of slow, 3 free``).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import scheduler.service.progress as records
from executor.core.constants import parse_mailbox
from executor.core.errors import BrokerError
from executor.core.progdef import Progdef
from executor.pb.dagyo.v1.failure_pb2 import FAILURE_KIND_BROKER
from executor.pb.dagyo.v1.job_pb2 import Job
from scheduler.constants import AUTOSCALER_FILE
from scheduler.service.ending import Ending
from scheduler.service.flows import FlowParts, needs
from scheduler.service.flowstate import ActiveFlow, FlowState
from scheduler.service.liveness import Liveness

if TYPE_CHECKING:
    from scheduler.flow.model import CheckedFlow
    from scheduler.service.broker import Broker

log = logging.getLogger("dagyo.scheduler")

# How often waiting flows are looked at again without news (executors heard anew).
ADMISSION_INTERVAL_S = 0.5

# A published job of a progdef without autoscaler expires this many heartbeat timeouts
# (150 s by default) after admission: its slot was free when the flow was admitted, so an
# executor that has not taken it by then is not coming.
JOB_EXPIRY_TIMEOUTS = 10


def job_expiry_s(heartbeat_timeout_s: float) -> float:
    """How long a published job of a progdef without autoscaler may wait in its mailbox."""
    return JOB_EXPIRY_TIMEOUTS * heartbeat_timeout_s


@dataclass(frozen=True)
class Need:
    """The job slots one waiting flow needs: mailbox -> its jobs there."""

    flow_id: str
    jobs: Mapping[str, int]


def ceiling(progdef: Progdef) -> int:
    """The most jobs of an autoscaled progdef that can ever run at once."""
    return progdef.scaling.max_executors * progdef.scaling.max_jobs


def autoscaled(progdef: Progdef) -> bool:
    """True when an autoscaler starts executors for the progdef (an AUTOSCALER file says so)."""
    return progdef.directory is not None and (progdef.directory / AUTOSCALER_FILE).exists()


def never_fits(progdef: Progdef, jobs: int, *, capacity: int | None, autoscaled: bool) -> str:
    """Why a flow with ``jobs`` jobs of ``progdef`` could never start; empty when it could.

    Args:
        capacity: the slots of its live executors (None: unknown); ignored when autoscaled.
    """
    if autoscaled:
        limit = ceiling(progdef)
        if jobs <= limit:
            return ""
        scaling = progdef.scaling
        return (
            f"progdef {progdef.name}: the flow has {jobs} jobs of it but its autoscaler runs "
            f"at most {limit} at once (scaling.max_executors {scaling.max_executors} × "
            f"max_jobs {scaling.max_jobs}): raise them in its progdef.json, or split the flow"
        )
    if not capacity or jobs <= capacity:
        return ""
    # Every job of a flow runs at once: the ones left waiting would block the rest.
    return (
        f"progdef {progdef.name}: the flow has {jobs} jobs of it but its executors hold "
        f"{capacity} at once and it has no autoscaler: start more executors or raise "
        "DAGYO_MAX_JOBS"
    )


def admit(
    waiting: Iterable[Need], capacity: Mapping[str, int | None], used: Counter[str]
) -> tuple[list[str], dict[str, str]]:
    """Decide which waiting flows start now, first come, first served.

    Args:
        waiting: the flows waiting, oldest first.
        capacity: each mailbox's job slots (None, or absent: unknown, never waited for).
        used: the slots of each mailbox taken by admitted flows' unended jobs.

    Returns:
        The ids of the flows to admit, and why each other one waits.
    """
    used = Counter(used)
    held: set[str] = set()  # the mailboxes an older waiting flow waits for
    admitted: list[str] = []
    reasons: dict[str, str] = {}
    for need in waiting:
        short = []
        for mailbox, jobs in sorted(need.jobs.items()):
            slots = capacity.get(mailbox)
            if slots is None:
                continue
            free = max(0, slots - used[mailbox])
            if jobs > free or mailbox in held:
                short.append(_reason(mailbox, jobs, free, behind=jobs <= free))
        if short:
            reasons[need.flow_id] = "; ".join(short)
            held.update(need.jobs)
        else:
            admitted.append(need.flow_id)
            used.update(need.jobs)
    return admitted, reasons


def _reason(mailbox: str, jobs: int, free: int, *, behind: bool) -> str:
    slots = "slot" if jobs == 1 else "slots"
    progdef = (parse_mailbox(mailbox) or (mailbox, ""))[0]
    reason = f"waiting for {jobs} {slots} of {progdef}, {free} free"
    return reason + (", behind an older waiting flow" if behind else "")


# The command of one executor, per progdef runtime (from a clone of dagyo).
EXECUTOR_COMMANDS = {"python": "python -m executor", "node": "node sdks/js/bin/dagyo-executor.js"}


def unserved(checked: CheckedFlow, liveness: Liveness, broker: Broker | None) -> list[str]:
    """One line per progdef of a flow that nothing serves, or that could never hold it.

    Args:
        broker: asked whether a mailbox has consumers; None to take every progdef without
            autoscaler as served (only the autoscalers' limits are checked then).

    Raises:
        BrokerError: when the broker cannot be asked.
    """
    problems = []
    progdefs: dict[str, Progdef] = {p.name: p for p in checked.progdefs.values()}
    jobs = Counter(p.name for p in checked.progdefs.values())
    for name, progdef in sorted(progdefs.items()):
        scaled = autoscaled(progdef)
        capacity = None
        if not scaled and broker is not None:
            mailbox = progdef.mailbox
            if not liveness.serves(mailbox) and not broker.consumer_count(mailbox):
                executor = EXECUTOR_COMMANDS.get(progdef.runtime, "python -m executor")
                problems.append(
                    f"progdef {name}: no executor serves mailbox {mailbox} and it has no "
                    f"autoscaler: start one with `dagyo up` or "
                    f"`{executor} {progdef.directory or name}`"
                )
                continue
            capacity = liveness.slots(mailbox)
        problem = never_fits(progdef, jobs[name], capacity=capacity, autoscaled=scaled)
        if problem:
            problems.append(problem)
    return problems


class Admitter:
    """Admits waiting flows: publishes their jobs once all of them fit (see the module).

    Args:
        parts: the flows (admission reads and marks them under the table's lock), where
            they are stored, the broker their jobs are published on, their watchers.
        liveness: the executors heard, and the job slots they announce.
        ending: ends a flow whose jobs cannot be published, or that has none.
    """

    def __init__(
        self,
        parts: FlowParts,
        liveness: Liveness,
        ending: Ending,
        *,
        heartbeat_timeout_s: float,
    ) -> None:
        self._table = parts.table
        self._store = parts.store
        self._liveness = liveness
        self._broker = parts.broker
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._progress = parts.watchers.progress
        self._fail = ending.fail
        self._finish = ending.finish
        self._pass = threading.Lock()  # one admission pass at a time, in order
        self._wake = threading.Event()  # set when slots may have come free

    def wake(self) -> None:
        """Slots may have come free (a job or a flow ended): look at the waiting flows."""
        self._wake.set()

    def loop(self, stop: threading.Event) -> None:
        """Admit waiting flows whenever slots may have come free, until ``stop`` is set."""
        while not stop.is_set():
            self._wake.wait(ADMISSION_INTERVAL_S)
            self._wake.clear()
            try:
                self.admit_waiting()
            except Exception:
                log.exception("admitting waiting flows failed")

    def admit_waiting(self) -> None:
        """Publish the jobs of the waiting flows that fit now (docs/protocol.md, admission).

        The others keep waiting, their records saying why. Never on the broker's I/O thread:
        it asks the broker for consumer counts.
        """
        table = self._table
        with self._pass:
            with table.lock:
                if not any(f.runtime.waiting for f in table.flows.values()):
                    return
                ceilings: dict[str, int] = {}
                for flow in table.flows.values():
                    ceilings.update(flow.runtime.ceilings)
                mailboxes = {m for f in table.waiting() for m in needs(f)}
            # An autoscaled mailbox's ceiling is known: only the others ask liveness/broker.
            capacities = {m: ceilings[m] if m in ceilings else self._capacity(m) for m in mailboxes}
            with table.lock:
                waiting = table.waiting()
                admitted, reasons = admit(
                    [Need(f.id, needs(f)) for f in waiting],
                    capacities,
                    table.slots_used(),
                )
                chosen = []
                now = time.monotonic()
                for flow in waiting:
                    reason = reasons.get(flow.id, "")
                    if flow.id in admitted:
                        flow.runtime.waiting = False
                        flow.admitted_at = flow.moved_at = now
                        chosen.append(flow)
                    if flow.record.waiting != reason:
                        flow.record.waiting = reason
                        self._store.save(flow.record, flow.runtime)
                        self._progress(flow.id, flow.record)
            for flow in chosen:
                self._publish(flow)

    def _capacity(self, mailbox: str) -> int | None:
        """The job slots of the executors pulling ``mailbox``; None when unknown.

        Executors that announce no slots (another implementation) but consume the mailbox
        make it unknown: a flow is never held for a capacity nobody said.
        """
        slots = self._liveness.slots(mailbox)
        if slots:
            return slots
        if slots is None:
            return None
        try:
            return None if self._broker.consumer_count(mailbox) else 0
        except BrokerError:
            return 0

    def _publish(self, flow: ActiveFlow) -> None:
        """Publish an admitted flow's jobs; then it runs (or fails, when the broker did)."""
        with self._table.lock:
            if flow.runtime.finishing:
                return
            held = list(flow.runtime.held_jobs)
            now = time.time()
            records.published(flow.record, now)  # before a started event can come
        deadline = flow.runtime.deadline
        expiry = now + job_expiry_s(self._heartbeat_timeout_s)
        groups: dict[float, list[tuple[str, Job]]] = {}
        for mailbox, descriptor in held:
            if mailbox in flow.runtime.ceilings:  # an autoscaler may take long to start one
                expires = deadline
            else:
                expires = min(deadline, expiry) if deadline else expiry
            job = Job.FromString(base64.b64decode(descriptor))
            job.published = now
            groups.setdefault(expires, []).append((mailbox, job))
        try:
            for expires, jobs in groups.items():
                self._broker.publish_jobs(jobs, expires=expires)
        except BrokerError as e:
            self._fail(flow.id, FAILURE_KIND_BROKER, str(e))
            return
        with self._table.lock:
            flow.runtime.held_jobs = []
            if not flow.runtime.finishing:
                flow.record.state = FlowState.RUNNING.proto
                self._progress(flow.id, flow.record)
            self._store.save(flow.record, flow.runtime)
            done = flow.complete() and not flow.runtime.finishing
        if done:  # a flow without nodes
            self._finish(flow.id, FlowState.SUCCEEDED)
