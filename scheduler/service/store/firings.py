"""The triggers' firings in a SQL store (``Store.firings``): which events started which
flows, so an event id starts at most one flow, and each event accepted into a batch whose
flow has not started yet, so a batch answered early (HTTP) is not lost when the scheduler
stops or dies before starting it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.store.base import LAST_FIRINGS
from scheduler.service.store.session import Session


class SqlFirings:
    """base.TriggerFirings over the sessions of a SQL store.

    Args:
        session: opens a transaction of the store.
        row_id: the column numbering rows in insertion order.
    """

    def __init__(self, session: Callable[[], AbstractContextManager[Session]], row_id: str) -> None:
        self._session = session
        self._row_id = row_id

    def flow_ids(self, trigger: str, source: str, event_id: str) -> list[str] | None:
        """The flows an event already started, or None when it never fired."""
        with self._session() as db:
            row = db.execute(
                "SELECT flow_ids FROM trigger_firings WHERE trigger = ? AND event_source = ? "
                "AND event_id = ?",
                (trigger, source, event_id),
            ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def add(self, trigger: str, keys: Sequence[tuple[str, str]], flow_ids: list[str]) -> None:
        """Record that the events ``keys`` (source, id) of a trigger started ``flow_ids``
        (and wait in no batch any more)."""
        now, ids = time.time(), json.dumps(flow_ids)
        with self._session() as db:
            db.executemany(
                "INSERT INTO trigger_firings (trigger, event_source, event_id, flow_ids, time) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(trigger, source, event_id, ids, now) for source, event_id in keys],
            )
            _forget(db, trigger, keys)

    def batched(self, trigger: str, key: tuple[str, str], values: dict[str, Any]) -> None:
        """Keep an event accepted into a batch of ``trigger`` until its flow starts."""
        with self._session() as db:
            db.execute(
                "INSERT INTO trigger_batched "
                "(trigger, event_source, event_id, trigger_values, time) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (trigger, *key, json.dumps(values), time.time()),
            )

    def unbatched(self, trigger: str, keys: Sequence[tuple[str, str]]) -> None:
        """Forget events of a batch whose flow was refused for good."""
        with self._session() as db:
            _forget(db, trigger, keys)

    def waiting(self) -> list[tuple[str, tuple[str, str], dict[str, Any]]]:
        """The events accepted into batches whose flows never started, oldest first:
        (trigger, (source, id), values)."""
        with self._session() as db:
            rows = db.execute(
                "SELECT trigger, event_source, event_id, trigger_values FROM trigger_batched "
                f"ORDER BY time, {self._row_id}"
            ).fetchall()
        return [(t, (s, i), json.loads(v)) for t, s, i, v in rows]

    def last(self, trigger: str) -> tuple[int, list[pb.TriggerFiring]]:
        """How many events a trigger took, and its last firings, newest first."""
        with self._session() as db:
            count = db.execute(
                "SELECT count(*) FROM trigger_firings WHERE trigger = ?", (trigger,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT event_id, event_source, flow_ids, time FROM trigger_firings "
                f"WHERE trigger = ? ORDER BY time DESC, {self._row_id} DESC LIMIT ?",
                (trigger, LAST_FIRINGS),
            ).fetchall()
        return int(count), [
            pb.TriggerFiring(event_id=i, event_source=s, flow_ids=json.loads(f), time=t)
            for i, s, f, t in rows
        ]


def _forget(db: Session, trigger: str, keys: Sequence[tuple[str, str]]) -> None:
    db.executemany(
        "DELETE FROM trigger_batched WHERE trigger = ? AND event_source = ? AND event_id = ?",
        [(trigger, source, event_id) for source, event_id in keys],
    )
