"""Liveness: when each executor was last heard from, and which started jobs are lost.

Executors publish a heartbeat every HEARTBEAT_INTERVAL_S; any event from an executor
(heartbeat, job started, job ended) counts as a sign of life. A started job whose
executor has been silent for longer than the timeout is lost.

Silence is never counted across a time the scheduler could not hear: after a start or a
reconnection every executor is taken as last heard *then* (the ``floor``), and while the
broker connection is down nobody is judged at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# An executor silent for this many timeouts is forgotten (it only shows in metrics).
FORGET_AFTER_TIMEOUTS = 10


class Liveness:
    """The last sign of life of each executor. Thread-safe.

    Args:
        timeout_s: how long a started job's executor may be silent.
        clock: monotonic seconds.
    """

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._serving: dict[str, float] = {}
        self._pulls: dict[str, str] = {}  # executor -> the mailbox it pulls
        self._slots: dict[str, int] = {}  # executor -> how many jobs it runs at once
        self._floor = clock()
        self._listening = True
        self._lagging = False

    def heard(self, executor: str) -> None:
        """Note a sign of life of ``executor`` now (and of the mailbox it pulls)."""
        now = self._clock()
        with self._lock:
            self._seen[executor] = now
            mailbox = self._pulls.get(executor)
            if mailbox is not None:
                self._serving[mailbox] = now

    def serving(self, executor: str, mailbox: str, *, draining: bool, slots: int = 0) -> None:
        """Note, from a heartbeat, which mailbox ``executor`` pulls (none while draining).

        Every later sign of life of the executor counts for the mailbox too: under load its
        heartbeats queue up behind many job events, which keep coming.
        """
        now = self._clock()
        with self._lock:
            if draining:
                self._pulls.pop(executor, None)
                self._slots.pop(executor, None)
                return
            self._pulls[executor] = mailbox
            self._slots[executor] = slots
            self._serving[mailbox] = now

    def gone(self, executor: str, mailbox: str) -> None:
        """``executor`` drained and exits (it said goodbye): it serves ``mailbox`` no more.

        The mailbox counts as unserved at once unless another executor pulls it.
        """
        with self._lock:
            self._pulls.pop(executor, None)
            self._slots.pop(executor, None)
            self._seen.pop(executor, None)
            if mailbox not in self._pulls.values():
                self._serving.pop(mailbox, None)

    def slots(self, mailbox: str) -> int | None:
        """Job slots of the executors heard pulling ``mailbox`` within the timeout.

        None when one of them did not say (an older executor): its capacity is unknown.
        """
        now = self._clock()
        with self._lock:
            total = 0
            for executor, pulled in self._pulls.items():
                if pulled != mailbox or now - self._seen.get(executor, 0.0) > self.timeout_s:
                    continue
                if not self._slots.get(executor):
                    return None
                total += self._slots[executor]
            return total

    def executors(self, mailbox: str) -> int:
        """How many executors were heard pulling ``mailbox`` within the timeout."""
        now = self._clock()
        with self._lock:
            return sum(
                pulled == mailbox and now - self._seen.get(executor, 0.0) <= self.timeout_s
                for executor, pulled in self._pulls.items()
            )

    def mailboxes(self) -> list[str]:
        """The mailboxes an executor was heard pulling within the timeout."""
        now = self._clock()
        with self._lock:
            return sorted(m for m, seen in self._serving.items() if now - seen <= self.timeout_s)

    def serves(self, mailbox: str, *, since_resume: bool = False) -> bool:
        """True when an executor pulling ``mailbox`` was heard within the timeout.

        An executor with every job slot busy stops consuming its mailbox, so the
        mailbox's consumer count alone would call a busy progdef unserved.

        Args:
            since_resume: also True while the scheduler has not listened for a whole
                timeout since it started or reconnected (it cannot have heard them yet).
        """
        now = self._clock()
        with self._lock:
            seen = self._serving.get(mailbox)
            if since_resume and (not self._judging() or now - self._floor <= self.timeout_s):
                return True
        return seen is not None and now - seen <= self.timeout_s

    def resume(self) -> None:
        """The scheduler hears events again (a start or a reconnection): count from now."""
        with self._lock:
            self._floor = self._clock()
            self._listening = True

    def pause(self) -> None:
        """The scheduler cannot hear events (the broker connection is down)."""
        with self._lock:
            self._listening = False

    def behind(self, lagging: bool) -> None:
        """Say whether the scheduler's events wait unread in a backlog.

        While they do, what it has not read yet may be any executor's sign of life, so
        nobody is judged; once it has caught up, silence counts from then.
        """
        with self._lock:
            if lagging:
                self._lagging = True
            elif self._lagging:
                self._lagging = False
                self._floor = self._clock()

    def _judging(self) -> bool:
        return self._listening and not self._lagging

    def silence(self, executor: str) -> float | None:
        """Seconds ``executor`` has been silent, or None while nobody can be judged."""
        now = self._clock()
        with self._lock:
            if not self._judging():
                return None
            return now - max(self._seen.get(executor, self._floor), self._floor)

    def since(self, moment: float) -> float | None:
        """Seconds since monotonic ``moment`` that the scheduler listened, or None while
        nobody can be judged (silence is never counted across a time it could not hear)."""
        now = self._clock()
        with self._lock:
            if not self._judging():
                return None
            return now - max(moment, self._floor)

    def lost(self, executor: str) -> str | None:
        """Why a started job of ``executor`` is lost, or None while it is not."""
        silent = self.silence(executor)
        if silent is None or silent <= self.timeout_s:
            return None
        return (
            f"job lost: executor {executor} sent no heartbeat for {silent:.1f} s (timeout "
            f"{self.timeout_s:g} s); it was killed, ran out of memory or lost its node"
        )

    def ages(self) -> dict[str, float]:
        """Seconds since each known executor was heard from; long-silent ones are forgotten."""
        now = self._clock()
        horizon = now - FORGET_AFTER_TIMEOUTS * self.timeout_s
        with self._lock:
            for executor in [e for e, seen in self._seen.items() if seen < horizon]:
                del self._seen[executor]
            return {executor: now - seen for executor, seen in self._seen.items()}
