"""Whether the database of the scheduler's state answers, and what the scheduler does
while it does not.

A PostgreSQL state is asked for nothing every ``STATE_CHECK_S`` on a thread of its own.
While it does not answer the scheduler serves no write — submit (so invoke and trigger
firings) and cancel are refused with :class:`~scheduler.errors.StateAway`, UNAVAILABLE
on gRPC — and says so: NOT_SERVING on gRPC health, 503 on ``/healthz``, so a Service in
front of several schedulers sends callers to the others. Writes already under way wait
on the store's writer and are stored once it answers (scheduler.service.store.writer);
the scheduler serves again by itself at the first answer. A SQLite state is a file of the
scheduler's own and is always taken as answering.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2

from scheduler.errors import StateAway, StoreUnavailable
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal
from scheduler.service.flowservice import FlowService

log = logging.getLogger("dagyo.scheduler")

# How often the database is asked, and how long an answer may take.
STATE_CHECK_S = 2.0
STATE_ANSWER_S = 5.0


class StateHealth:
    """Whether the state's database answers, asked by :meth:`loop` (see the module).

    Args:
        ping: asks the database; raises StoreUnavailable when it does not answer. None:
            a state that always answers (SQLite).
        where: the database, as messages name it (no password).
        on_change: called on the asking thread each time the answer changes.
        interval_s: how often it is asked.
    """

    def __init__(
        self,
        ping: Callable[[float], None] | None,
        *,
        where: str,
        on_change: Callable[[], None] = lambda: None,
        interval_s: float = STATE_CHECK_S,
    ) -> None:
        self._ping = ping
        self.where = where
        self._on_change = on_change
        self._interval_s = interval_s
        self._reason = ""  # why it does not answer; empty while it does
        self._thread: threading.Thread | None = None

    @property
    def reachable(self) -> bool:
        """True while the database answers (as of the last time it was asked)."""
        return not self._reason

    def check(self) -> bool:
        """Ask the database once; True when it answered."""
        if self._ping is None:
            return True
        try:
            self._ping(STATE_ANSWER_S)
            reason = ""
        except StoreUnavailable as e:
            reason = e.reason or "no answer"
        changed = bool(reason) != bool(self._reason)
        self._reason = reason
        if changed and reason:
            log.warning(
                "the scheduler's state, the database at %s, is unreachable (%s): submit and "
                "cancel are refused, and health says NOT_SERVING, until it answers again",
                self.where,
                reason,
            )
        elif changed:
            log.warning("the scheduler's state, the database at %s, answers again", self.where)
        if changed:
            self._on_change()
        return not reason

    def loop(self, stopping: threading.Event) -> None:
        """Ask the database every ``interval_s`` until ``stopping`` is set."""
        if self._ping is None:
            return
        while not stopping.wait(self._interval_s):
            try:
                self.check()
            except Exception:
                log.exception("asking the scheduler's state whether it answers failed")

    def start(self, stopping: threading.Event) -> None:
        """Run :meth:`loop` on a thread of its own (none for a state that always answers)."""
        if self._ping is not None:
            self._thread = threading.Thread(
                target=self.loop, args=(stopping,), name="dagyo-scheduler-state", daemon=True
            )
            self._thread.start()

    def join(self) -> None:
        """Wait for the thread of :meth:`start` to end (once ``stopping`` is set)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def refuse_writes(self) -> None:
        """Raise StateAway while the database does not answer."""
        reason = self._reason
        if reason:
            raise StateAway(self.where, reason)


class GuardedFlowService(FlowService):
    """The flow service, its writes refused while the state's database does not answer.

    Args:
        state: says whether it answers.
        **options: as for :class:`FlowService`.
    """

    def __init__(self, *, state: StateHealth, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._state = state

    def submit(self, principal: Principal, flow_json: str, **options: Any) -> str:
        """As FlowService.submit; first raises StateAway while the database is away."""
        self._state.refuse_writes()
        return super().submit(principal, flow_json, **options)

    def cancel(self, principal: Principal, flow_id: str) -> pb.FlowRecord:
        """As FlowService.cancel; first raises StateAway while the database is away."""
        self._state.refuse_writes()
        return super().cancel(principal, flow_id)


def publish_health(servicer: health.HealthServicer, services: Sequence[str], serving: bool) -> None:
    """Set every service's status on the gRPC health service: SERVING or NOT_SERVING."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in services:
        servicer.set(service, status)
