"""Retiring old progdef versions: upgrades that never strand a job.

A changed progdef gets a new version, so a new mailbox; new flows go to the catalogue's
current version only. An older version (a mailbox executors are heard pulling whose
version the catalogue no longer has) keeps being served while jobs of it wait or run.
Once none does, :class:`Versions` *retires* it: a Stop with ``retire_mailbox`` tells its
executors to drain and exit 0, and the mailbox is deleted once it is empty and unused
(the broker checks both atomically, so a job published in between is never lost).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from executor.pb.dagyo.v1 import scheduler_pb2 as pb
from executor.pb.dagyo.v1.events_pb2 import Stop
from executor.progdef import Progdef, mailbox_name

if TYPE_CHECKING:
    from scheduler.service.broker import Broker
    from scheduler.service.lifecycle import Lifecycle

log = logging.getLogger("dagyo.scheduler.versions")

CURRENT = "current"
DRAINING = "draining"
RETIRED = "retired"


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
    """Watches the versions executors serve and retires the old ones once idle.

    Args:
        catalogue: the current catalogue, read at each check.
        broker: to publish the retire message and delete the mailbox.
        lifecycle: whose flows' records say which jobs of a version are not ended, and
            whose heartbeats say which mailboxes are served.
    """

    def __init__(
        self, *, catalogue: Callable[[], dict[str, Progdef]], broker: Broker, lifecycle: Lifecycle
    ) -> None:
        self._catalogue = catalogue
        self._broker = broker
        self._lifecycle = lifecycle
        self._lock = threading.Lock()
        self._retiring: set[str] = set()  # mailboxes told to retire, not yet deleted
        self._retired: dict[str, VersionState] = {}
        # Mailboxes that were this scheduler's current version at some check. Only those
        # are retired when the catalogue moves on: an executor of a version this scheduler
        # never scheduled (another scheduler's catalogue on the same vhost, a canary) is
        # none of its business.
        self._ever_current: set[str] = {p.mailbox for p in catalogue().values()}

    def old_versions(self) -> list[VersionState]:
        """The versions executors are heard pulling that were this scheduler's current
        version once and are not any more."""
        catalogue = self._catalogue()
        with self._lock:
            self._ever_current.update(p.mailbox for p in catalogue.values())
            ever_current = set(self._ever_current)
        found = []
        for mailbox in self._lifecycle.liveness.mailboxes():
            for name, progdef in catalogue.items():
                prefix = mailbox_name(name, "")
                version = mailbox[len(prefix) :] if mailbox.startswith(prefix) else ""
                if (
                    version
                    and "." not in version
                    and version != progdef.version
                    and mailbox in ever_current
                ):
                    found.append(VersionState(name, version, DRAINING))
        return found

    def states(self) -> list[VersionState]:
        """Every version known: current ones, draining ones, and those retired."""
        current = [VersionState(p.name, p.version, CURRENT) for p in self._catalogue().values()]
        with self._lock:
            retired = list(self._retired.values())
        draining = [v for v in self.old_versions() if v.mailbox not in self._retired]
        return sorted(current + draining + retired, key=lambda v: (v.progdef, v.state))

    def report(self) -> list[pb.ProgdefVersion]:
        """:meth:`states` with each version's jobs waiting and running, for the API.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        report = []
        for known in self.states():
            waiting = 0 if known.state == RETIRED else self._broker.queue_depth(known.mailbox)
            running = self._lifecycle.jobs_running_of(known.progdef, known.version)
            report.append(
                pb.ProgdefVersion(
                    progdef=known.progdef,
                    version=known.version,
                    state=known.state,
                    waiting=waiting or 0,
                    running=running,
                )
            )
        return report

    def tick(self) -> None:
        """Retire each old version with no job waiting or running; delete idle mailboxes.

        Raises:
            BrokerError: when the broker cannot be asked.
        """
        for old in self.old_versions():
            if old.mailbox in self._retiring or old.mailbox in self._retired:
                continue
            if self._lifecycle.jobs_open_of(old.progdef, old.version):
                continue
            if self._broker.queue_depth(old.mailbox):
                continue
            log.info(
                "retiring progdef %s version %s: no job of it waits or runs",
                old.progdef,
                old.version,
            )
            with self._lock:
                self._retiring.add(old.mailbox)
            self._broker.publish_stop(
                Stop(
                    retire_mailbox=old.mailbox,
                    reason=f"progdef {old.progdef} version {old.version} is retired",
                )
            )
        for mailbox in sorted(self._retiring):
            if self._broker.delete_if_idle(mailbox):
                progdef, version = _split(mailbox, self._catalogue())
                log.info("deleted the retired mailbox %s", mailbox)
                with self._lock:
                    self._retiring.discard(mailbox)
                    self._retired[mailbox] = VersionState(progdef, version, RETIRED)


def _split(mailbox: str, catalogue: dict[str, Progdef]) -> tuple[str, str]:
    for name in catalogue:
        prefix = mailbox_name(name, "")
        if mailbox.startswith(prefix):
            return name, mailbox[len(prefix) :]
    return "", mailbox
