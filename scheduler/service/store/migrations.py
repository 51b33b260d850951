"""The store's schema, as numbered migrations per database, and what applies them.

A database records the migrations applied in ``schema_version``; a store applies the
missing ones in order when it opens, in one transaction, and refuses a database whose
schema is newer than its code (a newer scheduler migrated it). Never edit a migration
that shipped: add the next one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from scheduler.errors import SchemaTooNew
from scheduler.service.store.session import Session

# Each a script of statements separated by ";". SQLite's first one creates only what is
# missing: a file of a scheduler older than the migrations has most of it already.
SQLITE: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS flows (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        state INTEGER NOT NULL,
        record BLOB NOT NULL,
        runtime TEXT NOT NULL,
        tenant TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS flows_by_created ON flows (created);
    CREATE INDEX IF NOT EXISTS flows_by_state ON flows (state);
    CREATE INDEX IF NOT EXISTS flows_by_tenant ON flows (tenant);
    CREATE TABLE IF NOT EXISTS exports (
        flow_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        export TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (flow_id, position)
    );
    CREATE TABLE IF NOT EXISTS failures (
        flow_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        report BLOB NOT NULL,
        PRIMARY KEY (flow_id, position)
    );
    CREATE TABLE IF NOT EXISTS versions (
        mailbox TEXT PRIMARY KEY,
        progdef TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS spares (
        flow_id TEXT PRIMARY KEY,
        queues TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS trigger_firings (
        trigger TEXT NOT NULL,
        event_source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        flow_ids TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (trigger, event_source, event_id)
    );
    CREATE INDEX IF NOT EXISTS trigger_firings_by_time ON trigger_firings (trigger, time);
    CREATE TABLE IF NOT EXISTS trigger_batched (
        trigger TEXT NOT NULL,
        event_source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        trigger_values TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (trigger, event_source, event_id)
    );
    CREATE TABLE IF NOT EXISTS owner (broker TEXT NOT NULL)
    """,
    """
    CREATE TABLE flow_leases (
        flow_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires REAL NOT NULL
    )
    """,
    # 3: the cache of deterministic results (docs/cache.md), per tenant and key; each output
    # stream whole in one row, its hash in the entry's outputs (JSON).
    """
    CREATE TABLE cache_entries (
        tenant TEXT NOT NULL,
        key TEXT NOT NULL,
        progdef TEXT NOT NULL,
        version TEXT NOT NULL,
        flow_id TEXT NOT NULL,
        node TEXT NOT NULL,
        made REAL NOT NULL,
        last_used REAL NOT NULL,
        hits INTEGER NOT NULL,
        size INTEGER NOT NULL,
        outputs TEXT NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX cache_entries_by_use ON cache_entries (last_used);
    CREATE TABLE cache_streams (
        tenant TEXT NOT NULL,
        key TEXT NOT NULL,
        port TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (tenant, key, port)
    )
    """,
    # 4: several schedulers on one database: who is alive, the cancels asked of a flow's
    # owner, and which scheduler declared each spare.
    """
    CREATE TABLE schedulers (
        owner TEXT PRIMARY KEY,
        expires REAL NOT NULL
    );
    CREATE TABLE cancels (
        flow_id TEXT PRIMARY KEY,
        time REAL NOT NULL
    );
    ALTER TABLE spares ADD COLUMN owner TEXT NOT NULL DEFAULT ''
    """,
)

# ``seq`` numbers rows in insertion order, as SQLite's rowid does (pages follow it).
POSTGRES: tuple[str, ...] = (
    """
    CREATE TABLE flows (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id TEXT PRIMARY KEY,
        created DOUBLE PRECISION NOT NULL,
        state INTEGER NOT NULL,
        record BYTEA NOT NULL,
        runtime TEXT NOT NULL,
        tenant TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX flows_by_created ON flows (created, seq);
    CREATE INDEX flows_by_state ON flows (state);
    CREATE INDEX flows_by_tenant ON flows (tenant);
    CREATE TABLE exports (
        flow_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        export TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (flow_id, position)
    );
    CREATE TABLE failures (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        flow_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        report BYTEA NOT NULL
    );
    CREATE INDEX failures_by_flow ON failures (flow_id, seq);
    CREATE TABLE versions (
        mailbox TEXT PRIMARY KEY,
        progdef TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE spares (
        flow_id TEXT PRIMARY KEY,
        queues TEXT NOT NULL
    );
    CREATE TABLE trigger_firings (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        trigger TEXT NOT NULL,
        event_source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        flow_ids TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (trigger, event_source, event_id)
    );
    CREATE INDEX trigger_firings_by_time ON trigger_firings (trigger, time);
    CREATE TABLE trigger_batched (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        trigger TEXT NOT NULL,
        event_source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        trigger_values TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (trigger, event_source, event_id)
    );
    CREATE TABLE owner (broker TEXT NOT NULL)
    """,
    """
    CREATE TABLE flow_leases (
        flow_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE cache_entries (
        tenant TEXT NOT NULL,
        key TEXT NOT NULL,
        progdef TEXT NOT NULL,
        version TEXT NOT NULL,
        flow_id TEXT NOT NULL,
        node TEXT NOT NULL,
        made DOUBLE PRECISION NOT NULL,
        last_used DOUBLE PRECISION NOT NULL,
        hits BIGINT NOT NULL,
        size BIGINT NOT NULL,
        outputs TEXT NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX cache_entries_by_use ON cache_entries (last_used);
    CREATE TABLE cache_streams (
        tenant TEXT NOT NULL,
        key TEXT NOT NULL,
        port TEXT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (tenant, key, port)
    )
    """,
    # 4: several schedulers on one database: who is alive, the cancels asked of a flow's
    # owner, and which scheduler declared each spare.
    """
    CREATE TABLE schedulers (
        owner TEXT PRIMARY KEY,
        expires DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE cancels (
        flow_id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE spares ADD COLUMN owner TEXT NOT NULL DEFAULT ''
    """,
)


def migrate(db: Session, migrations: Sequence[str], *, where: str) -> int:
    """Apply the migrations ``db`` lacks, in order; the caller's transaction holds the
    database's lock against another scheduler migrating at the same time.

    Returns:
        The schema version now.

    Raises:
        SchemaTooNew: the database records a version past the last migration.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
    )
    current = int(db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
    if current > len(migrations):
        raise SchemaTooNew(
            f"the scheduler state at {where} has schema version {current}, newer than this "
            f"scheduler's {len(migrations)}: run the newer dagyo, or set DAGYO_STATE to "
            "another database"
        )
    for number in range(current + 1, len(migrations) + 1):
        for statement in migrations[number - 1].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?, ?)", (number, time.time())
        )
    return len(migrations)


def claim(db: Session, owner: str) -> str:
    """Record ``owner`` (the broker a scheduler serves) unless the database has one; return
    the one recorded."""
    db.execute(
        "INSERT INTO owner (broker) SELECT CAST(? AS TEXT) WHERE NOT EXISTS (SELECT 1 FROM owner)",
        (owner,),
    )
    return str(db.execute("SELECT broker FROM owner LIMIT 1").fetchone()[0])
