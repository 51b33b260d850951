"""The use cases of the scheduler's cache (``dagyo cache list`` and ``drop``), under the
gRPC adapter like the flow service's others.

A user sees and drops only its tenant's entries (another tenant's do not exist for it); an
admin, or every caller of a scheduler that runs open, sees and drops every tenant's.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from scheduler.cache.folder import Entry
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal

if TYPE_CHECKING:
    from scheduler.service.lifecycle import Lifecycle


class CachedResultsService:
    """Lists and drops the cached results a caller sees, in the lifecycle's cache."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    def list(self, principal: Principal) -> list[pb.CacheEntry]:
        """The entries the caller sees, most recently used first."""
        return [_proto(e) for e in self._lifecycle.cache.results.entries(_tenant(principal))]

    def drop(self, principal: Principal, selector: str = "") -> builtins.list[pb.CacheEntry]:
        """Remove the entries of ``PROGDEF``, ``PROGDEF@VERSION`` or ``KEY`` the caller sees
        (all of them when empty); return those removed."""
        return [_proto(e) for e in self._lifecycle.cache.results.drop(_tenant(principal), selector)]


def _tenant(principal: Principal) -> str | None:
    return None if principal.admin else principal.tenant


def _proto(entry: Entry) -> pb.CacheEntry:
    return pb.CacheEntry(
        key=entry.key,
        progdef=entry.progdef,
        version=entry.version,
        flow=entry.flow,
        node=entry.node,
        size=entry.size,
        made=entry.made,
        last_used=entry.last_used,
        hits=entry.hits,
        tenant=entry.tenant,
    )
