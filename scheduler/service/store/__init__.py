"""The scheduler's state behind one interface (base.py), in SQLite or PostgreSQL.

``DAGYO_STATE`` picks the store: a file path (or ``:memory:``) is SQLite, the default; a
``postgresql://`` (or ``postgres://``) URL is PostgreSQL. :func:`open_store` opens either,
created or migrated to this scheduler's schema.
"""

from __future__ import annotations

from scheduler.errors import LeaseLost, SchemaTooNew, StoreUnavailable
from scheduler.service.store.base import (
    DEFAULT_LIST_LIMIT,
    CachedResults,
    FailureRecords,
    Fence,
    FlowLeases,
    FlowRecords,
    FlowRuntimes,
    Lease,
    SpareRecords,
    Store,
    TriggerFirings,
    VersionRecords,
)
from scheduler.service.store.sqlite import SqliteStore
from scheduler.service.store.writer import StoreWriter

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(state: str) -> bool:
    """True when ``DAGYO_STATE`` names a PostgreSQL database rather than a SQLite file."""
    return state.startswith(POSTGRES_SCHEMES)


def open_store(state: str, *, owner: str = "") -> Store:
    """Open the store ``DAGYO_STATE`` names.

    Args:
        state: a SQLite file path, ``:memory:``, or a PostgreSQL URL.
        owner: the broker this scheduler serves (``broker_identity``); a store recorded
            for another one is refused.

    Raises:
        StoreUnavailable: a PostgreSQL URL that is malformed or does not answer.
        DagyoError: a file that cannot be opened, a store of another broker, or one whose
            schema is newer than this scheduler's (SchemaTooNew).
    """
    if is_postgres(state):
        # psycopg is imported only here: executors and SQLite schedulers never load it.
        from scheduler.service.store.postgres import PostgresStore

        return PostgresStore(state, owner=owner)
    return SqliteStore(state, owner=owner)


__all__ = [
    "DEFAULT_LIST_LIMIT",
    "CachedResults",
    "FailureRecords",
    "Fence",
    "FlowLeases",
    "FlowRecords",
    "FlowRuntimes",
    "Lease",
    "LeaseLost",
    "SchemaTooNew",
    "SpareRecords",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "StoreWriter",
    "TriggerFirings",
    "VersionRecords",
    "is_postgres",
    "open_store",
]
