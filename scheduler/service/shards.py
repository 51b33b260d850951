"""Which shards this scheduler owns: a fenced lease per shard, shared fairly by the live
schedulers of one database (docs/scaling.md, Several schedulers).

A flow's shard is the first hex character of its id (executor.core.constants.shard_of);
there are SHARDS of them. Each shard's ownership is a row of the store's leases named
``shard-{shard}``: its epoch grows with every change of owner, and every write of a flow
carries the fence of its shard's lease (scheduler.service.store.writer), so a scheduler
that lost a shard cannot overwrite its successor's records. Each scheduler notes itself
alive in the store's members and, every ``lease_s / 3``:

* renews the leases it holds; one renewed no more (taken over), or not renewed within its
  lease (the database unreachable), is *lost*: its flows are dropped from memory at once;
* takes shards whose lease ran out (or that never had one) up to its fair share,
  ``ceil(SHARDS / live schedulers)``;
* gives up one shard past its fair share (so a new scheduler gets shards), a tick after it
  stopped placing new flows in it (so no submit is in progress there when it goes);
* as the owner of shard ``0``, the *leader*, cleans up after schedulers whose membership
  ran out (their spares).

Held shards count as held on this process's monotonic clock only until ``lease_s`` after
the renewal began (the database's lease ends no sooner), so a scheduler paused past its
lease stops acting for the shard's flows the moment it runs again, before it could hear
it lost them.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import Queue

from executor.core.constants import SHARDS, shard_of
from scheduler.service.store.base import Fence, Store

log = logging.getLogger("dagyo.scheduler.shards")

ALL_SHARDS = tuple(f"{n:x}" for n in range(SHARDS))
LEASE_PREFIX = "shard-"
# Local validity: this part of the lease, from the start of the renewal that extended it.
LOCAL_PART = 0.9
LEADER_SHARD = "0"


def lease_name(shard: str) -> str:
    """The lease row of one shard."""
    return f"{LEASE_PREFIX}{shard}"


def process_owner() -> str:
    """This process's owner id: host, pid and a random part (a pid comes back)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class _Held:
    fence: Fence
    valid_until: float  # monotonic


class Shards:
    """The shards this scheduler owns, kept by :meth:`tick` (its own thread: :meth:`loop`).

    Args:
        store: the database shared with the other schedulers.
        owner: this process's owner id (:func:`process_owner`).
        lease_s: how long a lease lasts unless renewed (DAGYO_LEASE_S).
        gained: called with shards just taken (their flows are to be adopted).
        lost: called with shards lost or given up (their flows are to be dropped).
        dead: called (on the leader) with owners whose membership ran out.
        alone: take every shard at start whoever held it (a SQLite file: one scheduler).
    """

    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        lease_s: float,
        gained: Callable[[list[str]], None],
        lost: Callable[[list[str]], None],
        dead: Callable[[list[str]], None] = lambda owners: None,
        alone: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner
        self.lease_s = lease_s
        self._store = store
        self._gained = gained
        self._lost = lost
        self._dead = dead
        self._alone = alone
        self._clock = clock
        self._held: dict[str, _Held] = {}
        # Shards lost whose flows are not dropped yet: not taken again before (the flows
        # in memory may be ahead of the store; taken again, they are loaded from it).
        self._dropping: set[str] = set()
        # The shard to give up at the next tick: no new flow is placed in it meanwhile, so a
        # submit in progress when it is given up is a submit of a lease's length ago.
        self._leaving: str | None = None
        self._lock = threading.Lock()
        self._pass = threading.Lock()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self.live: list[str] = [owner]
        # Adopting and dropping flows takes long: done in order on a thread of their own,
        # so that the leases are renewed meanwhile.
        self._work: Queue[tuple[str, list[str], list[Fence]] | None] = Queue()
        self._worker = threading.Thread(target=self._run, name="dagyo-shards", daemon=True)
        self._worker.start()

    # --- what the rest of the scheduler asks ----------------------------------------------

    def fence(self, flow_id: str) -> Fence | None:
        """The fence of a flow's writes, or None when this scheduler does not own it now.

        A shard whose lease ran out unrenewed is lost from then on (its flows are dropped,
        and adopted again from the store if it is taken again): what the scheduler holds in
        memory of them may no longer be what the store holds.
        """
        shard = shard_of(flow_id)
        with self._lock:
            held = self._held.get(shard)
        if held is None:
            return None
        if self._clock() >= held.valid_until:
            self._drop([shard])
            return None
        return held.fence

    def holds(self, flow_id: str) -> bool:
        """True while this scheduler owns the flow's shard."""
        return self.fence(flow_id) is not None

    def owned(self) -> list[str]:
        """The shards owned now that new flows may be placed in, in order (not the one
        about to be given up)."""
        return [s for s in self._valid() if s != self._leaving]

    def _valid(self) -> list[str]:
        """Every shard whose lease this scheduler holds now, in order."""
        now = self._clock()
        with self._lock:
            return sorted(s for s, held in self._held.items() if now < held.valid_until)

    @property
    def leader(self) -> bool:
        """True while this scheduler owns shard 0: it runs the cluster-wide duties."""
        return LEADER_SHARD in self.owned()

    def wait_owned(self, timeout_s: float) -> list[str]:
        """The shards owned, waiting up to ``timeout_s`` for one when none is."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not (owned := self.owned()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.set()
                self._changed.wait(min(left, 0.1))
        return owned

    def refused(self, flow_id: str) -> None:
        """A write of a flow was refused (LeaseLost): its shard is lost from now on."""
        self._drop([shard_of(flow_id)])
        self._wake.set()

    # --- keeping them ---------------------------------------------------------------------

    def loop(self, stop: threading.Event) -> None:
        """Tick every ``lease_s / 3`` (or when woken) until ``stop``."""
        while not stop.is_set():
            self._wake.wait(self.lease_s / 3)
            self._wake.clear()
            if stop.is_set():
                return
            try:
                self.tick()
            except Exception:
                log.exception("keeping the shards' leases failed")

    def start(self) -> None:
        """The first tick, at start: a lone scheduler (``alone``) takes every shard; returns
        once their flows are adopted."""
        if self._alone:
            self._store.leases.expire_all(LEASE_PREFIX, keep=self.owner)
        self.tick()
        self._work.join()

    def _run(self) -> None:
        while (task := self._work.get()) is not None:
            what, shards, releases = task
            try:
                if what == "gained":
                    self._gained(shards)
                else:
                    self._lost(shards)
                    for fence in releases:
                        self._store.leases.release(fence.lease, fence)
            except Exception:
                log.exception("%s shards %s: failed", what, shards)
            finally:
                if what == "lost":
                    with self._lock:
                        self._dropping.difference_update(shards)
                self._work.task_done()

    def tick(self) -> None:
        """Renew, take, give up (see the module's docstring)."""
        with self._pass:
            self._tick()

    def _tick(self) -> None:
        leases = self._store.leases
        try:
            live: list[str] | None = self._store.members.beat(self.owner, lease_s=self.lease_s)
        except Exception as e:
            log.warning("cannot reach the scheduler state to renew leases: %s", e)
            live = None
        lost: list[str] = []
        with self._lock:
            held = dict(self._held)
        for shard, lease in held.items():
            began = self._clock()
            try:
                renewed: bool | None = leases.renew(
                    lease_name(shard), lease.fence, lease_s=self.lease_s
                )
            except Exception:
                renewed = None
            if renewed:
                lease.valid_until = began + self.lease_s * LOCAL_PART
            elif renewed is False or self._clock() >= lease.valid_until:
                lost.append(shard)
        if lost:
            log.warning("lost shards %s (another scheduler took them, or no state)", lost)
            self._drop(lost)
        if live is None:
            return
        self.live = live
        share = math.ceil(SHARDS / max(1, len(live)))
        owned = self._valid()
        if len(owned) > share and self._leaving in owned:
            # Announced a tick ago (no flow placed in it since): given up now.
            shard, self._leaving = self._leaving, None
            log.info("giving up shard %s (%d schedulers live)", shard, len(live))
            with self._lock:
                giving = self._held.get(shard)
            self._drop([shard], release=giving.fence if giving is not None else None)
        elif len(owned) > share:
            self._leaving = owned[-1]
        else:
            self._leaving = None
            if len(owned) < share:
                self._take(share - len(owned), live)
        if self.leader:
            dead = self._store.members.dead()
            if dead:
                self._dead(dead)
                self._store.members.forget(dead)

    def _take(self, wanted: int, live: Sequence[str]) -> None:
        # Each scheduler starts looking at a different place, so they seldom race.
        where = live.index(self.owner) if self.owner in live else 0
        start = (where * SHARDS) // max(1, len(live))
        order = [ALL_SHARDS[(start + i) % SHARDS] for i in range(SHARDS)]
        gained: list[str] = []
        for shard in order:
            if len(gained) >= wanted:
                break
            with self._lock:
                if shard in self._held or shard in self._dropping:
                    continue
            began = self._clock()
            try:
                epoch = self._store.leases.acquire(
                    lease_name(shard), self.owner, lease_s=self.lease_s
                )
            except Exception as e:  # its row locked by a write of its owner: next tick
                log.debug("cannot take shard %s now: %s", shard, e)
                continue
            if epoch is None:
                continue
            fence = Fence(self.owner, epoch, lease_name(shard))
            with self._lock:
                self._held[shard] = _Held(fence, began + self.lease_s * LOCAL_PART)
            gained.append(shard)
        if gained:
            log.info("took shards %s", gained)
            self._work.put(("gained", gained, []))
            with self._changed:
                self._changed.notify_all()

    def _drop(self, shards: list[str], *, release: Fence | None = None) -> None:
        """Forget ``shards`` now (their writes are refused from now on); their flows are
        dropped on the worker, then ``release`` is given up."""
        with self._lock:
            dropped = [s for s in shards if self._held.pop(s, None) is not None]
            self._dropping.update(dropped)
        if dropped:
            self._work.put(("lost", dropped, [release] if release is not None else []))

    def close(self) -> None:
        """Give every shard up now (a clean stop: the others take them at once)."""
        self._work.put(None)
        self._worker.join()
        with self._lock:
            held, self._held = dict(self._held), {}
        for shard, lease in held.items():
            try:
                self._store.leases.release(lease_name(shard), lease.fence)
            except Exception as e:
                log.warning("left shard %s to run out: %s", shard, e)
        try:
            self._store.members.forget([self.owner])
        except Exception as e:
            log.warning("left this scheduler's membership to run out: %s", e)
