"""Retiring old progdef versions: upgrades that never strand a job.

A changed progdef gets a new version, so a new mailbox; new flows go to the catalogue's
current version only. An *old* version is any other version of a catalogue progdef whose
mailbox this scheduler knows: one it had as current (before a restart too: the state
store keeps them), or one executors are heard pulling, whoever scheduled it. An old
version is *draining* while jobs of it wait or run. Once none does, :class:`Versions`
*retires* it: when executors still pull its mailbox, a Stop with ``retire_mailbox`` tells
them to drain and exit 0; the mailbox is deleted once it is empty and unused (the broker
checks both atomically, so a job published in between is never lost). An old mailbox no
executor has pulled for ``unserved_mailbox_s`` is deleted the same way, without a Stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from executor.core.constants import mailbox_name, parse_mailbox
from executor.core.progdef import Progdef
from executor.pb.dagyo.v1.events_pb2 import Stop
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

if TYPE_CHECKING:
    from scheduler.service.broker import Broker
    from scheduler.service.lifecycle import Lifecycle

log = logging.getLogger("dagyo.scheduler.versions")

CURRENT = "current"
DRAINING = "draining"
RETIRING = "retiring"  # told to retire, its mailbox not deleted yet; reported as draining
RETIRED = "retired"
# How often the retire message is sent again while executors still pull a retiring
# mailbox (one reconnecting when it was first sent never saw it).
RETIRE_REPEAT_S = 10.0


@dataclass(frozen=True)
class VersionState:
    """One progdef version the scheduler knows of, and where it is in its life."""

    progdef: str
    version: str
    state: str

    @property
    def mailbox(self) -> str:
        """The version's mailbox."""
        return mailbox_name(self.progdef, self.version)


class Versions:
    """Knows every progdef version's state and retires the old ones once idle.

    Args:
        catalogue: the current catalogue, read at each check.
        broker: to publish the retire message and delete mailboxes.
        lifecycle: whose flows' records say which jobs of a version are not ended, whose
            heartbeats say which mailboxes are pulled, and whose store keeps the versions.
        unserved_mailbox_s: how long an old mailbox no executor pulls is kept (empty, and
            no job of it open) before it is deleted.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        catalogue: Callable[[], dict[str, Progdef]],
        broker: Broker,
        lifecycle: Lifecycle,
        unserved_mailbox_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalogue = catalogue
        self._broker = broker
        self._lifecycle = lifecycle
        self._store = lifecycle.store
        self._unserved_s = unserved_mailbox_s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, VersionState] = {
            mailbox: VersionState(progdef, version, state)
            for mailbox, progdef, version, state in self._store.versions()
        }
        now = clock()
        # Mailbox -> when an executor was last heard pulling it; after a start, counted
        # from then (what happened before it is not known).
        self._served: dict[str, float] = dict.fromkeys(self._known, now)
        self._retire_sent: dict[str, float] = {}
        self._update(catalogue())

    def states(self) -> list[VersionState]:
        """Every version known: current ones, draining ones, and those retired."""
        self._update(self._catalogue())
        with self._lock:
            known = list(self._known.values())
        shown = [replace(v, state=DRAINING) if v.state == RETIRING else v for v in known]
        return sorted(shown, key=lambda v: (v.progdef, v.state, v.version))

    def report(self) -> list[pb.ProgdefVersion]:
        """:meth:`states` with each version's jobs waiting and running, for the API.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        report = []
        for known in self.states():
            waiting = 0 if known.state == RETIRED else self._broker.queue_depth(known.mailbox)
            running = self._lifecycle.table.jobs_running_of(known.progdef, known.version)
            report.append(
                pb.ProgdefVersion(
                    progdef=known.progdef,
                    version=known.version,
                    state=known.state,
                    waiting=waiting or 0,
                    running=running,
                    executors=self._lifecycle.liveness.executors(known.mailbox),
                )
            )
        return report

    def tick(self) -> None:
        """Retire each old version with no job waiting or running; delete idle mailboxes.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        heard = self._update(self._catalogue())
        now = self._clock()
        with self._lock:
            known = list(self._known.values())
        for old in known:
            if old.state in (DRAINING, RETIRING) and self._lifecycle.table.jobs_open_of(
                old.progdef, old.version
            ):
                continue
            if old.state == DRAINING:
                depth = self._broker.queue_depth(old.mailbox)
                if depth is None:
                    self._set(old, RETIRED, "its mailbox is gone")
                elif depth:
                    continue  # never taken: the watchdog fails its flow as lost
                elif old.mailbox in heard:
                    log.info(
                        "retiring progdef %s version %s: no job of it waits or runs",
                        old.progdef,
                        old.version,
                    )
                    self._set(old, RETIRING)
                    self._retire(old, now)
                elif self._unserved(old, now) and self._broker.delete_if_idle(old.mailbox):
                    self._set(old, RETIRED, "no executor pulled its empty mailbox")
            elif old.state == RETIRING:
                if self._broker.delete_if_idle(old.mailbox):
                    self._set(old, RETIRED, "its executors drained")
                elif old.mailbox in heard and now - self._retire_sent.get(
                    old.mailbox, float("-inf")
                ) >= (RETIRE_REPEAT_S):
                    self._retire(old, now)

    def _update(self, catalogue: dict[str, Progdef]) -> set[str]:
        """Take in the catalogue's current versions and the mailboxes executors pull;
        return the latter."""
        heard = set(self._lifecycle.liveness.mailboxes())
        now = self._clock()
        current = {p.mailbox: VersionState(p.name, p.version, CURRENT) for p in catalogue.values()}
        changes: list[tuple[VersionState, str]] = []
        back: list[VersionState] = []
        with self._lock:
            for mailbox in heard:
                self._served[mailbox] = now
            for mailbox, version in current.items():
                if self._known.get(mailbox) != version:
                    changes.append((version, CURRENT))
            for mailbox, known in self._known.items():
                if known.state == CURRENT and mailbox not in current:
                    changes.append((known, DRAINING))
            for mailbox in heard - current.keys():
                parsed = parse_mailbox(mailbox)
                pulled = self._known.get(mailbox)
                if parsed is None or parsed[0] not in catalogue:
                    continue  # not a version of this scheduler's progdefs
                if pulled is None:
                    changes.append((VersionState(*parsed, DRAINING), DRAINING))
                elif pulled.state == RETIRED:
                    back.append(pulled)
        for known in back:
            # An executor of a retired version started again and declared its mailbox anew
            # (not one whose last heartbeat is merely still recent).
            if self._broker.queue_depth(known.mailbox) is not None:
                changes.append((known, DRAINING))
        for version, state in changes:
            self._set(version, state)
        return heard

    def _unserved(self, old: VersionState, now: float) -> bool:
        """True once no executor has been heard pulling the mailbox for the set time."""
        with self._lock:
            served = self._served.get(old.mailbox, now)
        return now - served >= self._unserved_s

    def _set(self, version: VersionState, state: str, why: str = "") -> None:
        with self._lock:
            self._known[version.mailbox] = replace(version, state=state)
            self._served.setdefault(version.mailbox, self._clock())
        self._store.save_version(
            version.mailbox, progdef=version.progdef, version=version.version, state=state
        )
        if state == RETIRED:
            log.info("progdef %s version %s retired: %s", version.progdef, version.version, why)

    def _retire(self, old: VersionState, now: float) -> None:
        self._retire_sent[old.mailbox] = now
        self._broker.publish_stop(
            Stop(
                retire_mailbox=old.mailbox,
                reason=f"progdef {old.progdef} version {old.version} is retired",
            )
        )
