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

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from executor.constants import MAILBOX_PREFIX
from executor.progdef import Progdef

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


def progdef_of(mailbox: str) -> str:
    """The progdef name in a mailbox's name (``dagyo.jobs.<progdef>.<version>``)."""
    return mailbox.removeprefix(f"{MAILBOX_PREFIX}.").rpartition(".")[0] or mailbox


def ceiling(progdef: Progdef) -> int:
    """The most jobs of an autoscaled progdef that can ever run at once."""
    return progdef.scaling.max_executors * progdef.scaling.max_jobs


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
    waiting: Iterable[Need], capacity: Callable[[str], int | None], used: Counter[str]
) -> tuple[list[str], dict[str, str]]:
    """Decide which waiting flows start now, first come, first served.

    Args:
        waiting: the flows waiting, oldest first.
        capacity: a mailbox's job slots (None: unknown, never waited for).
        used: the slots of each mailbox taken by admitted flows' unended jobs.

    Returns:
        The ids of the flows to admit, and why each other one waits.
    """
    used = Counter(used)
    held: set[str] = set()  # the mailboxes an older waiting flow waits for
    capacities: dict[str, int | None] = {}
    admitted: list[str] = []
    reasons: dict[str, str] = {}
    for need in waiting:
        short = []
        for mailbox, jobs in sorted(need.jobs.items()):
            if mailbox not in capacities:
                capacities[mailbox] = capacity(mailbox)
            slots = capacities[mailbox]
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
    reason = f"waiting for {jobs} {slots} of {progdef_of(mailbox)}, {free} free"
    return reason + (", behind an older waiting flow" if behind else "")
