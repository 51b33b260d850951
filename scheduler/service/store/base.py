"""The store interface: what the scheduler keeps across restarts, grouped by concern.

A store holds each flow's record (a ``dagyo.v1.FlowRecord`` without its exports) and the
*runtime* a running flow is resumed from, the exports kept so far, every failure report,
the queues declared ahead (spares), the progdef versions it knows, the trigger firings
(``Store.firings``, named as the triggers use them) and each flow's ownership lease
(``Store.leases``), whose epoch fences the writes of a scheduler that lost it, and the
cache of deterministic results (``Store.cache``).
Its implementations sit side by side (sqlite.py, postgres.py) and pass one contract test
(tests/scheduler/test_store_contract.py); every method is thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime, FlowState

if TYPE_CHECKING:
    from scheduler.cache.folder import Entry

DEFAULT_LIST_LIMIT = 100
# The firings of each trigger `dagyo triggers` shows.
LAST_FIRINGS = 5


@dataclass(frozen=True)
class Fence:
    """What a fenced write carries: the lease of its flow its writer holds.

    Attributes:
        owner: the scheduler that took the lease (unique per process).
        epoch: the lease's epoch when it took it.
        lease: the name of the lease row (``shard-7``: the lease of the flow's shard); empty
            for the flow's own lease (keyed by its id).
    """

    owner: str
    epoch: int
    lease: str = ""


@dataclass(frozen=True)
class Lease:
    """A flow's ownership lease as the database holds it.

    Attributes:
        owner: the scheduler holding (or last holding) it.
        epoch: how many times the flow changed owner (1 for its first).
        expires: Unix time, on the database's clock, it runs out unless renewed.
    """

    owner: str
    epoch: int
    expires: float


class FlowRecords(Protocol):
    """Each flow's record, with the exports kept so far."""

    def create(self, record: pb.FlowRecord, runtime: FlowRuntime) -> None:
        """Store a new flow."""

    def save(
        self,
        record: pb.FlowRecord,
        runtime: FlowRuntime | None = None,
        exports: Sequence[pb.Export] = (),
        *,
        fence: Fence | None = None,
    ) -> None:
        """Update a flow's record (and runtime), appending newly kept exports, atomically.

        The exports are numbered from ``runtime.kept_count - len(exports)``: update the
        runtime's counts before saving.

        Raises:
            LeaseLost: ``fence`` is not the flow's lease any more (nothing is stored).
        """

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        """The record of one flow (with its kept exports), or None when unknown."""

    def exports(self, flow_id: str) -> list[pb.Export]:
        """The exports kept for one flow, in the order they arrived."""

    def recent(
        self, limit: int = DEFAULT_LIST_LIMIT, *, tenant: str | None = None, token: str = ""
    ) -> tuple[list[pb.FlowRecord], str]:
        """A page of flows (of one tenant, or of all), newest first, without exports and
        without their Flow JSON.

        Args:
            limit: the page size (0 for DEFAULT_LIST_LIMIT); a page also stops at
                PAGE_BYTES of records.
            token: the token of the previous page; empty for the newest flows.

        Returns:
            (the records, the token of the next page or ``""`` after the last).

        Raises:
            ValueError: for a token this store did not give.
        """

    def running_count(self, tenant: str) -> int:
        """How many flows of one tenant are pending or running."""

    def count_by_state(self) -> dict[FlowState, int]:
        """How many flows are in each state."""


class FlowRuntimes(Protocol):
    """What running flows are resumed from."""

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        """The runtime of one flow, or None when unknown."""

    def active(self) -> list[tuple[pb.FlowRecord, FlowRuntime]]:
        """Every flow that has not ended (pending or running), oldest first."""


class FailureRecords(Protocol):
    """Every failure report of every flow."""

    def add_failure(self, report: FailureReport, *, fence: Fence | None = None) -> None:
        """Record one failure report of a flow.

        Raises:
            LeaseLost: ``fence`` is not the flow's lease any more (nothing is stored).
        """

    def failures(
        self,
        flow_id: str = "",
        *,
        tenant: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        token: str = "",
    ) -> tuple[list[FailureReport], str]:
        """A page of the failure reports of one flow, or of every flow (``""``) of one
        tenant or of all, oldest first; paged as :meth:`FlowRecords.recent`."""


class SpareRecords(Protocol):
    """The flow ids whose queues were declared ahead (scheduler.service.spares)."""

    def add_spare(self, flow_id: str, queues: Sequence[str], *, owner: str = "") -> None:
        """Note a flow id whose queues are about to be declared ahead of its flow, by
        ``owner`` (the scheduler declaring them)."""

    def remove_spares(self, flow_ids: Sequence[str]) -> None:
        """Forget spares: deleted, or taken by a flow (whose record now holds the queues)."""

    def spares(self, owners: Sequence[str] | None = None) -> list[tuple[str, list[str], bool]]:
        """Every spare noted (of these owners, or of all): its flow id, its queues, and
        whether a flow took it since."""


class VersionRecords(Protocol):
    """The progdef versions known, so a restarted scheduler still retires an old one."""

    def save_version(self, mailbox: str, *, progdef: str, version: str, state: str) -> None:
        """Record (or update) the state of one progdef version, keyed by its mailbox."""

    def versions(self) -> list[tuple[str, str, str, str]]:
        """Every version recorded: (mailbox, progdef, version, state), by mailbox."""


class TriggerFirings(Protocol):
    """Which events started which flows, per trigger (an event fires once), and the events
    accepted into a batch whose flow has not started yet."""

    def flow_ids(self, trigger: str, source: str, event_id: str) -> list[str] | None:
        """The flows an event already started, or None when it never fired."""

    def add(self, trigger: str, keys: Sequence[tuple[str, str]], flow_ids: list[str]) -> None:
        """Record that the events ``keys`` (source, id) of a trigger started ``flow_ids``
        (and wait in no batch any more)."""

    def batched(self, trigger: str, key: tuple[str, str], values: dict[str, Any]) -> None:
        """Keep an event accepted into a batch of ``trigger`` until its flow starts."""

    def unbatched(self, trigger: str, keys: Sequence[tuple[str, str]]) -> None:
        """Forget events of a batch whose flow was refused for good."""

    def waiting(self) -> list[tuple[str, tuple[str, str], dict[str, Any]]]:
        """The events accepted into batches whose flows never started, oldest first:
        (trigger, (source, id), values)."""

    def last(self, trigger: str) -> tuple[int, list[pb.TriggerFiring]]:
        """How many events a trigger took, and its last LAST_FIRINGS firings, newest first."""


class FlowLeases(Protocol):
    """Which scheduler owns each flow: a lease with an epoch, renewed while the owner lives,
    taken over (the epoch one more) once it runs out. Times are the database's clock."""

    def acquire(self, flow_id: str, owner: str, *, lease_s: float) -> int | None:
        """Take the flow's lease for ``lease_s``: the epoch to fence writes with, or None
        while another owner's lease runs. An owner taking its own lease again keeps its
        epoch; any other raises it by one (so the last owner's writes are refused)."""

    def renew(self, flow_id: str, fence: Fence, *, lease_s: float) -> bool:
        """Extend the lease ``fence`` names by ``lease_s`` from now; False when another
        owner took it (the caller owns the flow no more)."""

    def release(self, flow_id: str, fence: Fence) -> None:
        """Give the lease up now (another may take it at once); nothing when not held."""

    def expire_all(self, prefix: str, *, keep: str) -> None:
        """End now every lease whose name starts with ``prefix`` but ``keep``'s (a lone
        scheduler at start takes what a crashed one held)."""

    def lease(self, flow_id: str) -> Lease | None:
        """The flow's lease, or None when it never had one."""


class CachedResults(Protocol):
    """The cache of deterministic results (docs/cache.md), keyed by (tenant, key): each
    entry's output streams whole (items as the folder cache lays them out), its hash per
    port in ``Entry.outputs``, unchecked here."""

    def put(self, entry: Entry, streams: Mapping[str, bytes], *, max_bytes: int) -> bool:
        """Keep an entry under (``entry.tenant``, ``entry.key``), replacing the one there,
        then evict the least recently used entries (any tenant's) until the cache holds at
        most ``max_bytes``. False, keeping nothing, when the entry alone is larger."""

    def get(
        self, tenant: str, key: str, *, streams: bool = True
    ) -> tuple[Entry, dict[str, bytes]] | None:
        """The entry and its streams by port (none unless ``streams``), or None (its use is
        not counted)."""

    def have(self, tenant: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` have an entry of ``tenant`` (one query for a flow's nodes)."""

    def touch(self, tenant: str, key: str, at: float) -> None:
        """Count one use of the entry at Unix time ``at`` (its place in the eviction order)."""

    def entries(self, tenant: str | None = None) -> list[Entry]:
        """The entries of one tenant (None: of every tenant), most recently used first."""

    def drop(self, tenant: str | None = None, selector: str = "") -> list[Entry]:
        """Remove the entries of ``PROGDEF``, ``PROGDEF@VERSION`` or ``KEY`` (every entry
        when empty) of one tenant (None: of every tenant), and return them."""


class Members(Protocol):
    """The live schedulers sharing the database: each renews its row while it runs; times
    are the database's clock."""

    def beat(self, owner: str, *, lease_s: float) -> list[str]:
        """Note ``owner`` alive for ``lease_s`` more; every live owner, sorted."""

    def dead(self) -> list[str]:
        """The owners whose rows ran out (their schedulers died or were paused)."""

    def forget(self, owners: list[str]) -> None:
        """Delete these owners' rows (their leftovers are cleaned up)."""


class CancelRequests(Protocol):
    """Cancels asked of a scheduler that does not own the flow, for its owner to carry out."""

    def request_cancel(self, flow_id: str) -> None:
        """Ask the flow's owner to cancel it (kept until done, across takeovers)."""

    def cancel_requests(self) -> list[str]:
        """The flows whose cancel was asked and not yet carried out."""

    def cancelled(self, flow_id: str) -> None:
        """The cancel of a flow was carried out (or the flow had ended)."""


class Store(
    FlowRecords,
    FlowRuntimes,
    FailureRecords,
    SpareRecords,
    VersionRecords,
    Protocol,
):
    """Everything the scheduler keeps: one database behind every concern."""

    @property
    def firings(self) -> TriggerFirings:
        """The triggers' firings, in the same database."""

    @property
    def leases(self) -> FlowLeases:
        """The flows' ownership leases, in the same database."""

    @property
    def cache(self) -> CachedResults:
        """The cache of deterministic results, in the same database."""

    @property
    def members(self) -> Members:
        """The live schedulers, in the same database."""

    @property
    def cancels(self) -> CancelRequests:
        """The cancels asked of a flow's owner, in the same database."""

    def close(self) -> None:
        """Close the database (idempotent)."""
