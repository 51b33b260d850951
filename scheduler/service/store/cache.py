"""The scheduler's cache of deterministic results in a SQL store (``Store.cache``).

An entry is keyed by (tenant, key): one tenant's entry is never read for another. Its
output streams are kept whole, one row per port, in the folder cache's layout (each item a
4-byte big-endian length and its bytes) with the stream's size and SHA-256 in the entry, so
a reader checks them before use (scheduler.service.cached). The store holds at most the
bound it is given: putting an entry evicts the least recently used ones, every tenant's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from scheduler.cache.folder import Entry, Output
from scheduler.service.store.session import Session

# Keys asked about in one query (SQLite takes at most 32766 parameters).
_KEYS_PER_QUERY = 500
_COLUMNS = "tenant, key, progdef, version, flow_id, node, made, last_used, hits, size, outputs"


class SqlCache:
    """base.CachedResults over the sessions of a SQL store."""

    def __init__(self, session: Callable[[], AbstractContextManager[Session]]) -> None:
        self._session = session

    def put(self, entry: Entry, streams: Mapping[str, bytes], *, max_bytes: int) -> bool:
        """See base.CachedResults.put."""
        if entry.size > max_bytes:
            return False
        outputs = json.dumps({port: vars(output) for port, output in entry.outputs.items()})
        with self._session() as db:
            db.execute(
                f"INSERT INTO cache_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, key) DO UPDATE SET progdef = excluded.progdef, "
                "version = excluded.version, flow_id = excluded.flow_id, node = excluded.node, "
                "made = excluded.made, last_used = excluded.last_used, hits = excluded.hits, "
                "size = excluded.size, outputs = excluded.outputs",
                (
                    entry.tenant,
                    entry.key,
                    entry.progdef,
                    entry.version,
                    entry.flow,
                    entry.node,
                    entry.made,
                    entry.last_used,
                    entry.hits,
                    entry.size,
                    outputs,
                ),
            )
            db.execute(
                "DELETE FROM cache_streams WHERE tenant = ? AND key = ?", (entry.tenant, entry.key)
            )
            db.executemany(
                "INSERT INTO cache_streams (tenant, key, port, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, key, port) DO UPDATE SET data = excluded.data",
                [(entry.tenant, entry.key, port, data) for port, data in streams.items()],
            )
            _evict(db, max_bytes, keep=(entry.tenant, entry.key))
        return True

    def get(
        self, tenant: str, key: str, *, streams: bool = True
    ) -> tuple[Entry, dict[str, bytes]] | None:
        """See base.CachedResults.get."""
        with self._session() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM cache_entries WHERE tenant = ? AND key = ?",
                (tenant, key),
            ).fetchone()
            if row is None:
                return None
            rows = (
                db.execute(
                    "SELECT port, data FROM cache_streams WHERE tenant = ? AND key = ?",
                    (tenant, key),
                ).fetchall()
                if streams
                else []
            )
        return _entry(row), {str(port): bytes(data) for port, data in rows}

    def have(self, tenant: str, keys: Sequence[str]) -> set[str]:
        """See base.CachedResults.have."""
        found: set[str] = set()
        with self._session() as db:
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = list(keys[start : start + _KEYS_PER_QUERY])
                marks = ", ".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key FROM cache_entries WHERE tenant = ? AND key IN ({marks})",
                    (tenant, *chunk),
                ).fetchall()
                found.update(str(row[0]) for row in rows)
        return found

    def touch(self, tenant: str, key: str, at: float) -> None:
        """See base.CachedResults.touch."""
        with self._session() as db:
            db.execute(
                "UPDATE cache_entries SET hits = hits + 1, last_used = ? "
                "WHERE tenant = ? AND key = ?",
                (at, tenant, key),
            )

    def entries(self, tenant: str | None = None) -> list[Entry]:
        """See base.CachedResults.entries."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self._session() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM cache_entries {where} ORDER BY last_used DESC, key",
                args,
            ).fetchall()
        return [_entry(row) for row in rows]

    def drop(self, tenant: str | None = None, selector: str = "") -> list[Entry]:
        """See base.CachedResults.drop."""
        name, _, version = selector.partition("@")
        dropped = [
            entry
            for entry in self.entries(tenant)
            if not selector
            or entry.key == selector
            or (entry.progdef == name and version in ("", entry.version))
        ]
        with self._session() as db:
            for entry in dropped:
                _delete(db, entry.tenant, entry.key)
        return dropped


def _evict(db: Session, max_bytes: int, *, keep: tuple[str, str]) -> None:
    """Delete least recently used entries until the cache holds at most ``max_bytes``."""
    total = int(db.execute("SELECT coalesce(sum(size), 0) FROM cache_entries").fetchone()[0])
    if total <= max_bytes:
        return
    rows = db.execute(
        "SELECT tenant, key, size FROM cache_entries ORDER BY last_used, key"
    ).fetchall()
    for tenant, key, size in rows:
        if total <= max_bytes:
            break
        if (tenant, key) != keep:
            _delete(db, tenant, key)
            total -= int(size)


def _delete(db: Session, tenant: str, key: str) -> None:
    db.execute("DELETE FROM cache_entries WHERE tenant = ? AND key = ?", (tenant, key))
    db.execute("DELETE FROM cache_streams WHERE tenant = ? AND key = ?", (tenant, key))


def _entry(row: Any) -> Entry:
    tenant, key, progdef, version, flow_id, node, made, last_used, hits, _, outputs = row
    return Entry(
        key=str(key),
        progdef=str(progdef),
        version=str(version),
        node=str(node),
        flow=str(flow_id),
        made=float(made),
        last_used=float(last_used),
        hits=int(hits),
        outputs={port: Output(**spec) for port, spec in json.loads(outputs).items()},
        tenant=str(tenant),
    )
