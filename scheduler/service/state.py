"""The scheduler's state: flow records, kept exports and failure reports, in SQLite.

One SQLite file (or ``:memory:``) holds everything a restarted scheduler needs: each
flow's record (a ``dagyo.v1.FlowRecord`` without its exports), the *runtime* a running
flow is resumed from (its queues, export streams and deadline), the exports kept so far,
every failure report, and the progdef versions it knows (so a restarted scheduler still
retires an old version). All methods are thread-safe: one connection, one lock. The
flows' states and runtimes live in flowstate.py (exported from here too).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from executor.core.errors import DagyoError
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.flowstate import (
    NODE_ENDED,
    NODE_FAILED,
    NODE_PENDING,
    NODE_RUNNING,
    NODE_STOPPED,
    ActiveFlow,
    ExportStream,
    FlowRuntime,
    FlowState,
)
from scheduler.service.limits import PAGE_BYTES, bounded_failure

DEFAULT_LIST_LIMIT = 100
_SCHEMA = """
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
"""


class FlowStore:
    """Flow records, kept exports and failure reports in one SQLite database.

    Args:
        path: the database file (its folder is created), or ``:memory:``.
        owner: the broker this scheduler serves (``broker_identity``); the first owner is
            recorded in the file and any other is refused.

    Raises:
        DagyoError: the file cannot be opened, or belongs to another broker's scheduler.
    """

    def __init__(self, path: str, *, owner: str = "") -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by every thread, serialised by self._lock.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if path != ":memory:":
                # WAL lets readers and the writer overlap; NORMAL sync is still safe against
                # a crash of this process, the failure a scheduler restart has to survive.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(flows)")}
            if "tenant" not in columns:  # a file written before tenants existed
                self._db.execute("ALTER TABLE flows ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
            self._db.execute("CREATE INDEX IF NOT EXISTS flows_by_tenant ON flows (tenant)")
            recorded = self._claim(owner) if owner else owner
        except (OSError, sqlite3.Error) as e:
            raise DagyoError(
                f"cannot open the scheduler state at {path} ({e}): set DAGYO_STATE to a "
                "writable file, or to :memory:"
            ) from e
        if recorded != owner:
            self._db.close()
            raise DagyoError(
                f"the state file {path} belongs to the scheduler of {recorded}, not {owner}: "
                "give this scheduler a state file of its own (--state or DAGYO_STATE)"
            )

    def _claim(self, owner: str) -> str:
        """Record ``owner`` unless the file has one; return the recorded owner."""
        self._db.execute("CREATE TABLE IF NOT EXISTS owner (broker TEXT NOT NULL)")
        self._db.execute(
            "INSERT INTO owner (broker) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM owner)", (owner,)
        )
        return str(self._db.execute("SELECT broker FROM owner LIMIT 1").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    # --- flows -----------------------------------------------------------------------------

    def create(self, record: pb.FlowRecord, runtime: FlowRuntime) -> None:
        """Store a new flow."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO flows (id, created, state, record, runtime, tenant) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.created,
                    record.state,
                    _bare(record),
                    runtime.to_json(),
                    record.tenant,
                ),
            )

    def save(
        self,
        record: pb.FlowRecord,
        runtime: FlowRuntime | None = None,
        exports: Sequence[pb.Export] = (),
    ) -> None:
        """Update a flow's record (and runtime), appending newly kept exports, atomically.

        The exports are numbered from ``runtime.kept_count - len(exports)``: update the
        runtime's counts before saving.
        """
        bare = _bare(record)
        if runtime is None:
            with self._lock:  # one statement: atomic without a transaction of its own
                self._db.execute(
                    "UPDATE flows SET state = ?, record = ? WHERE id = ?",
                    (record.state, bare, record.id),
                )
            return
        state = runtime.to_json()
        with self._lock, self._db:
            if exports:
                self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE flows SET state = ?, record = ?, runtime = ? WHERE id = ?",
                (record.state, bare, state, record.id),
            )
            if exports:
                first = runtime.kept_count - len(exports)
                self._db.executemany(
                    "INSERT INTO exports (flow_id, position, export, value_json) "
                    "VALUES (?, ?, ?, ?)",
                    ((record.id, first + i, e.export, e.value_json) for i, e in enumerate(exports)),
                )

    def get(self, flow_id: str, *, with_exports: bool = True) -> pb.FlowRecord | None:
        """The record of one flow (with its kept exports), or None when unknown."""
        with self._lock:
            row = self._db.execute("SELECT record FROM flows WHERE id = ?", (flow_id,)).fetchone()
            if row is None:
                return None
            record = _record(row[0])
            if with_exports:
                record.exports.extend(self._exports(flow_id))
            return record

    def runtime(self, flow_id: str) -> FlowRuntime | None:
        """The runtime of one flow, or None when unknown."""
        with self._lock:
            row = self._db.execute("SELECT runtime FROM flows WHERE id = ?", (flow_id,)).fetchone()
        return None if row is None else FlowRuntime.from_json(row[0])

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
        where: list[str] = ["1"]
        args: list[object] = []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if token:
            created, rowid = _token(token)
            where.append("(created < ? OR (created = ? AND rowid < ?))")
            args += [created, created, rowid]
        limit = limit or DEFAULT_LIST_LIMIT
        with self._lock:
            rows = self._db.execute(
                f"SELECT rowid, created, record FROM flows WHERE {' AND '.join(where)} "
                "ORDER BY created DESC, rowid DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        records: list[pb.FlowRecord] = []
        size, last = 0, ""
        for rowid, created, blob in rows[:limit]:
            record = _record(blob)
            record.ClearField("flow_json")  # up to a message's size: Get has it
            if records and size + record.ByteSize() > PAGE_BYTES:
                return records, last
            records.append(record)
            size += record.ByteSize()
            last = f"{created!r}:{rowid}"
        return records, (last if len(rows) > limit else "")

    def active(self) -> list[tuple[pb.FlowRecord, FlowRuntime]]:
        """Every flow that has not ended (pending or running), oldest first."""
        states = (FlowState.PENDING.proto, FlowState.RUNNING.proto)
        with self._lock:
            rows = self._db.execute(
                "SELECT record, runtime FROM flows WHERE state IN (?, ?) ORDER BY created",
                states,
            ).fetchall()
        return [(pb.FlowRecord.FromString(r), FlowRuntime.from_json(t)) for r, t in rows]

    def running_count(self, tenant: str) -> int:
        """How many flows of one tenant are pending or running."""
        states = (FlowState.PENDING.proto, FlowState.RUNNING.proto)
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM flows WHERE tenant = ? AND state IN (?, ?)",
                (tenant, *states),
            ).fetchone()
        return int(row[0])

    def count_by_state(self) -> dict[FlowState, int]:
        """How many flows are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM flows GROUP BY state").fetchall()
        counts = dict.fromkeys(FlowState, 0)
        for state, count in rows:
            counts[FlowState.from_proto(state)] = count
        return counts

    # --- exports and failures --------------------------------------------------------------

    def exports(self, flow_id: str) -> list[pb.Export]:
        """The exports kept for one flow, in the order they arrived."""
        with self._lock:
            return self._exports(flow_id)

    def _exports(self, flow_id: str) -> list[pb.Export]:
        rows = self._db.execute(
            "SELECT export, value_json FROM exports WHERE flow_id = ? ORDER BY position",
            (flow_id,),
        ).fetchall()
        return [pb.Export(export=name, value_json=value) for name, value in rows]

    def add_failure(self, report: FailureReport) -> None:
        """Record one failure report of a flow."""
        with self._lock, self._db:
            self._db.execute(
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
        """A page of the failure reports of one flow, or of every flow (``""``) of one
        tenant or of all, oldest first.

        Args:
            limit: the page size (0 for DEFAULT_LIST_LIMIT); a page also stops at
                PAGE_BYTES of reports.
            token: the token of the previous page; empty for the oldest reports.

        Returns:
            (the reports, the token of the next page or ``""`` after the last).

        Raises:
            ValueError: for a token this store did not give.
        """
        where = ["failures.rowid > ?"]
        args: list[object] = [_number(token) if token else 0]
        if flow_id:
            where.append("failures.flow_id = ?")
            args.append(flow_id)
        elif tenant is not None:
            where.append("flows.tenant = ?")
            args.append(tenant)
        limit = limit or DEFAULT_LIST_LIMIT
        with self._lock:
            rows: list[tuple[int, bytes]] = self._db.execute(
                "SELECT failures.rowid, report FROM failures "
                "LEFT JOIN flows ON flows.id = failures.flow_id "
                f"WHERE {' AND '.join(where)} ORDER BY failures.rowid LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        reports: list[FailureReport] = []
        size, last = 0, 0
        for rowid, blob in rows[:limit]:
            if reports and size + len(blob) > PAGE_BYTES:
                return reports, str(last)
            reports.append(bounded_failure(FailureReport.FromString(blob)))
            size += len(blob)
            last = rowid
        return reports, (str(last) if len(rows) > limit else "")

    # --- spares (scheduler.service.spares) ---------------------------------------------------

    def add_spare(self, flow_id: str, queues: Sequence[str]) -> None:
        """Note a flow id whose queues are about to be declared ahead of its flow."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO spares (flow_id, queues) VALUES (?, ?)",
                (flow_id, json.dumps(list(queues))),
            )

    def remove_spares(self, flow_ids: Sequence[str]) -> None:
        """Forget spares: deleted, or taken by a flow (whose record now holds the queues)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM spares WHERE flow_id = ?", [(f,) for f in flow_ids])

    def spares(self) -> list[tuple[str, list[str], bool]]:
        """Every spare noted: its flow id, its queues, and whether a flow took it since."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.flow_id, s.queues, f.id IS NOT NULL FROM spares s "
                "LEFT JOIN flows f ON f.id = s.flow_id ORDER BY s.flow_id"
            ).fetchall()
        return [(flow_id, json.loads(queues), bool(taken)) for flow_id, queues, taken in rows]

    # --- progdef versions ------------------------------------------------------------------

    def save_version(self, mailbox: str, *, progdef: str, version: str, state: str) -> None:
        """Record (or update) the state of one progdef version, keyed by its mailbox."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO versions (mailbox, progdef, version, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET state = excluded.state",
                (mailbox, progdef, version, state),
            )

    def versions(self) -> list[tuple[str, str, str, str]]:
        """Every version recorded: (mailbox, progdef, version, state), by mailbox."""
        with self._lock:
            rows = self._db.execute(
                "SELECT mailbox, progdef, version, state FROM versions ORDER BY mailbox"
            ).fetchall()
        return [(str(m), str(p), str(v), str(s)) for m, p, v, s in rows]


def _number(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"page token {token[:40]!r} is not one this scheduler gave") from None


def _token(token: str) -> tuple[float, int]:
    created, _, rowid = token.partition(":")
    try:
        return float(created), int(rowid)
    except ValueError:
        raise ValueError(f"page token {token[:40]!r} is not one this scheduler gave") from None


def _record(blob: bytes) -> pb.FlowRecord:
    """A stored record, its failure text within bounds (a record stored before them)."""
    record = pb.FlowRecord.FromString(blob)
    if record.HasField("failure"):
        record.failure.CopyFrom(bounded_failure(record.failure))
    return record


def _bare(record: pb.FlowRecord) -> bytes:
    """The record without its exports (they live in their own table), its failure text
    within bounds."""
    failure = record.failure
    if not record.exports and bounded_failure(failure) is failure:
        return record.SerializeToString()
    bare = pb.FlowRecord()
    bare.CopyFrom(record)
    del bare.exports[:]
    if record.HasField("failure"):
        bare.failure.CopyFrom(bounded_failure(failure))
    return bare.SerializeToString()


__all__ = [
    "NODE_ENDED",
    "NODE_FAILED",
    "NODE_PENDING",
    "NODE_RUNNING",
    "NODE_STOPPED",
    "ActiveFlow",
    "ExportStream",
    "FlowRuntime",
    "FlowState",
    "FlowStore",
]
