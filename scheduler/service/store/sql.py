"""The store's queries, written once for every SQL database (sqlite.py, postgres.py).

Statements use ``?`` placeholders and SQL both databases speak; an implementation gives a
:class:`Session` (a transaction, the placeholders translated) and the name of the column
that numbers rows in insertion order (pages of flows and failures follow it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager

from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import FlowRuntime, FlowState
from scheduler.service.limits import PAGE_BYTES, bounded_failure
from scheduler.service.store.base import DEFAULT_LIST_LIMIT, Fence
from scheduler.service.store.cache import SqlCache
from scheduler.service.store.firings import SqlFirings
from scheduler.service.store.leases import (
    SqlCancels,
    SqlDialect,
    SqlLeases,
    SqlMembers,
    check_fence,
)
from scheduler.service.store.session import Session

_ACTIVE = (FlowState.PENDING.proto, FlowState.RUNNING.proto)
# Exports inserted by one statement at most (4 parameters each: within SQLite's 999).
ROWS_PER_INSERT = 200


class SqlStore:
    """Every store method, over the session an implementation opens.

    Subclasses set ``row_id`` (the column numbering rows in insertion order) and implement
    ``session``; they open the database and migrate it in their constructor.
    """

    row_id = "rowid"
    dialect = SqlDialect(now="(julianday('now') - 2440587.5) * 86400.0", for_update="")

    @property
    def firings(self) -> SqlFirings:
        """The triggers' firings, in the same database."""
        return SqlFirings(self.session, self.row_id)

    @property
    def leases(self) -> SqlLeases:
        """The flows' ownership leases, in the same database."""
        return SqlLeases(self.session, self.dialect)

    @property
    def cache(self) -> SqlCache:
        """The cache of deterministic results, in the same database."""
        return SqlCache(self.session)

    @property
    def members(self) -> SqlMembers:
        """The live schedulers, in the same database."""
        return SqlMembers(self.session, self.dialect)

    @property
    def cancels(self) -> SqlCancels:
        """The cancels asked of a flow's owner, in the same database."""
        return SqlCancels(self.session, self.dialect)

    def session(self) -> AbstractContextManager[Session]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the database (idempotent)."""
        raise NotImplementedError

    # --- flow records ----------------------------------------------------------------------

    def create(self, record: pb.FlowRecord, runtime: FlowRuntime) -> None:
        """Store a new flow (a flow stored already is left as it is)."""
        with self.session() as db:
            db.execute(
                "INSERT INTO flows (id, created, state, record, runtime, tenant) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    record.id,
                    record.created,
                    record.state,
                    bare(record),
                    runtime.to_json(),
                    record.tenant,
                ),
            )

    def save(
        self,
        record: pb.FlowRecord,
        runtime: FlowRuntime | None = None,
        exports: Sequence[pb.Export] = (),
        *,
        fence: Fence | None = None,
    ) -> None:
        """Update a flow's record (and runtime), appending newly kept exports, atomically
        (see base.FlowRecords.save). Saving again what was saved changes nothing."""
        with self.session() as db:
            check_fence(db, self.dialect, record.id, fence)
            if runtime is None:
                db.execute(
                    "UPDATE flows SET state = ?, record = ? WHERE id = ?",
                    (record.state, bare(record), record.id),
                )
                return
            db.execute(
                "UPDATE flows SET state = ?, record = ?, runtime = ? WHERE id = ?",
                (record.state, bare(record), runtime.to_json(), record.id),
            )
            if exports:
                first = runtime.kept_count - len(exports)
                rows = [
                    (record.id, first + i, e.export, e.value_json) for i, e in enumerate(exports)
                ]
                # Plain statements of many rows, not a pipeline: between them a session is
                # idle in its transaction, which the server ends when its scheduler is paused
                # (postgres.py), releasing the lease row its fence check locked.
                for start in range(0, len(rows), ROWS_PER_INSERT):
                    chunk = rows[start : start + ROWS_PER_INSERT]
                    db.execute(
                        "INSERT INTO exports (flow_id, position, export, value_json) VALUES "
                        + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                        + " ON CONFLICT DO NOTHING",
                        [value for row in chunk for value in row],
                    )

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        """The record of one flow (with its kept exports), or None when unknown."""
        with self.session() as db:
            row = db.execute("SELECT record FROM flows WHERE id = ?", (flow_id,)).fetchone()
            if row is None:
                return None
            record = _record(row[0])
            if with_exports:
                record.exports.extend(_exports(db, flow_id))
            return record

    def exports(self, flow_id: str) -> list[pb.Export]:
        """The exports kept for one flow, in the order they arrived."""
        with self.session() as db:
            return _exports(db, flow_id)

    def recent(
        self, limit: int = DEFAULT_LIST_LIMIT, *, tenant: str | None = None, token: str = ""
    ) -> tuple[list[pb.FlowRecord], str]:
        """A page of flows, newest first (see base.FlowRecords.recent)."""
        where: list[str] = ["TRUE"]
        args: list[object] = []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        row_id = self.row_id
        if token:
            created, number = _token(token)
            where.append(f"(created < ? OR (created = ? AND {row_id} < ?))")
            args += [created, created, number]
        limit = limit or DEFAULT_LIST_LIMIT
        with self.session() as db:
            rows = db.execute(
                f"SELECT {row_id}, created, record FROM flows WHERE {' AND '.join(where)} "
                f"ORDER BY created DESC, {row_id} DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        records: list[pb.FlowRecord] = []
        size, last = 0, ""
        for number, created, blob in rows[:limit]:
            record = _record(blob)
            record.ClearField("flow_json")  # up to a message's size: Get has it
            if records and size + record.ByteSize() > PAGE_BYTES:
                return records, last
            records.append(record)
            size += record.ByteSize()
            last = f"{created!r}:{number}"
        return records, (last if len(rows) > limit else "")

    def running_count(self, tenant: str) -> int:
        """How many flows of one tenant are pending or running."""
        with self.session() as db:
            row = db.execute(
                "SELECT count(*) FROM flows WHERE tenant = ? AND state IN (?, ?)",
                (tenant, *_ACTIVE),
            ).fetchone()
        return int(row[0])

    def count_by_state(self) -> dict[FlowState, int]:
        """How many flows are in each state."""
        with self.session() as db:
            rows = db.execute("SELECT state, count(*) FROM flows GROUP BY state").fetchall()
        counts = dict.fromkeys(FlowState, 0)
        for state, count in rows:
            counts[FlowState.from_proto(state)] = int(count)
        return counts

    # --- runtimes --------------------------------------------------------------------------

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        """The runtime of one flow, or None when unknown."""
        with self.session() as db:
            row = db.execute("SELECT runtime FROM flows WHERE id = ?", (flow_id,)).fetchone()
        return None if row is None else FlowRuntime.from_json(row[0])

    def active(self) -> list[tuple[pb.FlowRecord, FlowRuntime]]:
        """Every flow that has not ended (pending or running), oldest first."""
        with self.session() as db:
            rows = db.execute(
                "SELECT record, runtime FROM flows WHERE state IN (?, ?) "
                f"ORDER BY created, {self.row_id}",
                _ACTIVE,
            ).fetchall()
        return [(pb.FlowRecord.FromString(r), FlowRuntime.from_json(t)) for r, t in rows]

    # --- failures --------------------------------------------------------------------------

    def add_failure(self, report: FailureReport, *, fence: Fence | None = None) -> None:
        """Record one failure report of a flow (see base.FailureRecords.add_failure)."""
        with self.session() as db:
            check_fence(db, self.dialect, report.flow_id, fence)
            db.execute(
                "INSERT INTO failures (flow_id, position, report) VALUES (?, "
                "(SELECT count(*) FROM failures WHERE flow_id = ?), ?)",
                (report.flow_id, report.flow_id, bounded_failure(report).SerializeToString()),
            )

    def failures(
        self,
        flow_id: str = "",
        *,
        tenant: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        token: str = "",
    ) -> tuple[list[FailureReport], str]:
        """A page of failure reports, oldest first (see base.FailureRecords.failures)."""
        row_id = f"failures.{self.row_id}"
        where = [f"{row_id} > ?"]
        args: list[object] = [_number(token) if token else 0]
        if flow_id:
            where.append("failures.flow_id = ?")
            args.append(flow_id)
        elif tenant is not None:
            where.append("flows.tenant = ?")
            args.append(tenant)
        limit = limit or DEFAULT_LIST_LIMIT
        with self.session() as db:
            rows: list[tuple[int, bytes]] = db.execute(
                f"SELECT {row_id}, report FROM failures "
                "LEFT JOIN flows ON flows.id = failures.flow_id "
                f"WHERE {' AND '.join(where)} ORDER BY {row_id} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        reports: list[FailureReport] = []
        size, last = 0, 0
        for number, blob in rows[:limit]:
            if reports and size + len(blob) > PAGE_BYTES:
                return reports, str(last)
            reports.append(bounded_failure(FailureReport.FromString(bytes(blob))))
            size += len(blob)
            last = number
        return reports, (str(last) if len(rows) > limit else "")

    # --- spares ----------------------------------------------------------------------------

    def add_spare(self, flow_id: str, queues: Sequence[str], *, owner: str = "") -> None:
        """Note a flow id whose queues are about to be declared ahead of its flow."""
        with self.session() as db:
            db.execute(
                "INSERT INTO spares (flow_id, queues, owner) VALUES (?, ?, ?) "
                "ON CONFLICT (flow_id) DO UPDATE SET queues = excluded.queues",
                (flow_id, json.dumps(list(queues)), owner),
            )

    def remove_spares(self, flow_ids: Sequence[str]) -> None:
        """Forget spares: deleted, or taken by a flow (whose record now holds the queues)."""
        with self.session() as db:
            db.executemany("DELETE FROM spares WHERE flow_id = ?", [(f,) for f in flow_ids])

    def spares(self, owners: Sequence[str] | None = None) -> list[tuple[str, list[str], bool]]:
        """Every spare noted (of these owners, or of all): its flow id, its queues, and
        whether a flow took it since."""
        with self.session() as db:
            rows = db.execute(
                "SELECT s.flow_id, s.queues, f.id IS NOT NULL, s.owner FROM spares s "
                "LEFT JOIN flows f ON f.id = s.flow_id ORDER BY s.flow_id"
            ).fetchall()
        if owners is not None:
            rows = [row for row in rows if row[3] in owners]
        return [(flow_id, json.loads(queues), bool(taken)) for flow_id, queues, taken, _ in rows]

    # --- progdef versions ------------------------------------------------------------------

    def save_version(self, mailbox: str, *, progdef: str, version: str, state: str) -> None:
        """Record (or update) the state of one progdef version, keyed by its mailbox."""
        with self.session() as db:
            db.execute(
                "INSERT INTO versions (mailbox, progdef, version, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state",
                (mailbox, progdef, version, state),
            )

    def versions(self) -> list[tuple[str, str, str, str]]:
        """Every version recorded: (mailbox, progdef, version, state), by mailbox."""
        with self.session() as db:
            rows = db.execute(
                "SELECT mailbox, progdef, version, state FROM versions ORDER BY mailbox"
            ).fetchall()
        return [(str(m), str(p), str(v), str(s)) for m, p, v, s in rows]


def _exports(db: Session, flow_id: str) -> list[pb.Export]:
    rows = db.execute(
        "SELECT export, value_json FROM exports WHERE flow_id = ? ORDER BY position",
        (flow_id,),
    ).fetchall()
    return [pb.Export(export=name, value_json=value) for name, value in rows]


def _number(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"page token {token[:40]!r} is not one this scheduler gave") from None


def _token(token: str) -> tuple[float, int]:
    created, _, number = token.partition(":")
    try:
        return float(created), int(number)
    except ValueError:
        raise ValueError(f"page token {token[:40]!r} is not one this scheduler gave") from None


def _record(blob: bytes) -> pb.FlowRecord:
    """A stored record, its failure text within bounds (a record stored before them)."""
    record = pb.FlowRecord.FromString(bytes(blob))
    if record.HasField("failure"):
        record.failure.CopyFrom(bounded_failure(record.failure))
    return record


def bare(record: pb.FlowRecord) -> bytes:
    """The record without its exports (they live in their own table), its failure text
    within bounds."""
    failure = record.failure
    if not record.exports and bounded_failure(failure) is failure:
        return record.SerializeToString()
    stored = pb.FlowRecord()
    stored.CopyFrom(record)
    del stored.exports[:]
    if record.HasField("failure"):
        stored.failure.CopyFrom(bounded_failure(failure))
    return stored.SerializeToString()
