"""Where triggers keep what must outlive a restart, in the scheduler's SQLite file: each
firing (trigger, event source and id, flow ids, time), so an event id starts at most one
flow, and each event accepted into a batch whose flow has not started yet, so a batch
answered early (HTTP) is not lost when the scheduler stops or dies before starting it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

from executor.core.errors import DagyoError
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

# The firings of each trigger `dagyo triggers` shows.
LAST_FIRINGS = 5

_SCHEMA = """
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
"""


class FiringStore:
    """The firings of every trigger and the events waiting in batches (thread-safe)."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise DagyoError(f"cannot open the trigger firings in {path} ({e})") from e

    def flow_ids(self, trigger: str, source: str, event_id: str) -> list[str] | None:
        """The flows an event already started, or None when it never fired."""
        with self._lock:
            row = self._db.execute(
                "SELECT flow_ids FROM trigger_firings WHERE trigger=? AND event_source=? "
                "AND event_id=?",
                (trigger, source, event_id),
            ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def add(self, trigger: str, keys: list[tuple[str, str]], flow_ids: list[str]) -> None:
        """Record that the events ``keys`` (source, id) of a trigger started ``flow_ids``
        (and wait in no batch any more)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO trigger_firings VALUES (?, ?, ?, ?, ?)",
                [
                    (trigger, source, event_id, json.dumps(flow_ids), now)
                    for source, event_id in keys
                ],
            )
            self._forget(trigger, keys)
            self._db.execute("COMMIT")

    def batched(self, trigger: str, key: tuple[str, str], values: dict[str, Any]) -> None:
        """Keep an event accepted into a batch of ``trigger`` until its flow starts."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO trigger_batched VALUES (?, ?, ?, ?, ?)",
                (trigger, *key, json.dumps(values), time.time()),
            )

    def unbatched(self, trigger: str, keys: list[tuple[str, str]]) -> None:
        """Forget events of a batch whose flow was refused for good."""
        with self._lock:
            self._forget(trigger, keys)

    def waiting(self) -> list[tuple[str, tuple[str, str], dict[str, Any]]]:
        """The events accepted into batches whose flows never started, oldest first:
        (trigger, (source, id), values)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT trigger, event_source, event_id, trigger_values FROM trigger_batched "
                "ORDER BY time, rowid"
            ).fetchall()
        return [(t, (s, i), json.loads(v)) for t, s, i, v in rows]

    def last(self, trigger: str) -> tuple[int, list[pb.TriggerFiring]]:
        """How many events a trigger took, and its last firings, newest first."""
        with self._lock:
            count = self._db.execute(
                "SELECT COUNT(*) FROM trigger_firings WHERE trigger=?", (trigger,)
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT event_id, event_source, flow_ids, time FROM trigger_firings "
                "WHERE trigger=? ORDER BY time DESC, rowid DESC LIMIT ?",
                (trigger, LAST_FIRINGS),
            ).fetchall()
        return int(count), [
            pb.TriggerFiring(event_id=i, event_source=s, flow_ids=json.loads(f), time=t)
            for i, s, f, t in rows
        ]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _forget(self, trigger: str, keys: list[tuple[str, str]]) -> None:
        self._db.executemany(
            "DELETE FROM trigger_batched WHERE trigger=? AND event_source=? AND event_id=?",
            [(trigger, source, event_id) for source, event_id in keys],
        )
