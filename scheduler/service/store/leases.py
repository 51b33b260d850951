"""The flows' ownership leases in a SQL store (``Store.leases``), and the fence check of
the writes that carry one.

A lease row is never deleted: its epoch only grows, so a write fenced with an epoch that
was ever taken over stays refused. Times come from the database's clock, the one clock
every scheduler sharing it agrees on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from scheduler.errors import LeaseLost
from scheduler.service.store.base import Fence, Lease
from scheduler.service.store.session import Session


class SqlDialect:
    """What differs between the SQL stores here: the database's clock as Unix seconds, and
    how a read locks the row it reads until the transaction ends."""

    def __init__(self, *, now: str, for_update: str, lock_timeout: str = "") -> None:
        self.now = now
        self.for_update = for_update
        # A statement bounding how long a lease call waits for a row another holds.
        self.lock_timeout = lock_timeout


class SqlLeases:
    """base.FlowLeases over the sessions of a SQL store."""

    def __init__(
        self, session: Callable[[], AbstractContextManager[Session]], dialect: SqlDialect
    ) -> None:
        self._session = session
        self._now = dialect.now
        self._bounded = dialect.lock_timeout

    def _bound(self, db: Session) -> None:
        if self._bounded:
            db.execute(self._bounded)

    def acquire(self, flow_id: str, owner: str, *, lease_s: float) -> int | None:
        """See base.FlowLeases.acquire."""
        now = self._now
        with self._session() as db:
            self._bound(db)
            row = db.execute(
                "INSERT INTO flow_leases (flow_id, owner, epoch, expires) "
                f"VALUES (?, ?, 1, {now} + ?) "
                "ON CONFLICT (flow_id) DO UPDATE SET "
                "epoch = CASE WHEN flow_leases.owner = excluded.owner THEN flow_leases.epoch "
                "ELSE flow_leases.epoch + 1 END, "
                "owner = excluded.owner, expires = excluded.expires "
                f"WHERE flow_leases.owner = excluded.owner OR flow_leases.expires < {now} "
                "RETURNING epoch",
                (flow_id, owner, lease_s),
            ).fetchone()
        return None if row is None else int(row[0])

    def renew(self, flow_id: str, fence: Fence, *, lease_s: float) -> bool:
        """See base.FlowLeases.renew."""
        with self._session() as db:
            self._bound(db)
            row = db.execute(
                f"UPDATE flow_leases SET expires = {self._now} + ? "
                "WHERE flow_id = ? AND owner = ? AND epoch = ? RETURNING epoch",
                (lease_s, flow_id, fence.owner, fence.epoch),
            ).fetchone()
        return row is not None

    def release(self, flow_id: str, fence: Fence) -> None:
        """See base.FlowLeases.release."""
        with self._session() as db:
            db.execute(
                "UPDATE flow_leases SET expires = 0 WHERE flow_id = ? AND owner = ? AND epoch = ?",
                (flow_id, fence.owner, fence.epoch),
            )

    def expire_all(self, prefix: str, *, keep: str) -> None:
        """See base.FlowLeases.expire_all."""
        with self._session() as db:
            db.execute(
                "UPDATE flow_leases SET expires = 0 WHERE flow_id LIKE ? AND owner <> ?",
                (prefix + "%", keep),
            )

    def lease(self, flow_id: str) -> Lease | None:
        """See base.FlowLeases.lease."""
        with self._session() as db:
            row = db.execute(
                "SELECT owner, epoch, expires FROM flow_leases WHERE flow_id = ?", (flow_id,)
            ).fetchone()
        return None if row is None else Lease(str(row[0]), int(row[1]), float(row[2]))


def check_fence(db: Session, dialect: SqlDialect, flow_id: str, fence: Fence | None) -> None:
    """Refuse the write of this transaction unless ``fence`` is the flow's lease; the row
    stays locked until the write commits, so a takeover waits for it.

    Raises:
        LeaseLost: another scheduler took the lease (or none was ever taken).
    """
    if fence is None:
        return
    row = db.execute(
        f"SELECT owner, epoch FROM flow_leases WHERE flow_id = ?{dialect.for_update}",
        (fence.lease or flow_id,),
    ).fetchone()
    if row is None or (str(row[0]), int(row[1])) != (fence.owner, fence.epoch):
        holder = "nobody" if row is None else f"{row[0]} (epoch {row[1]})"
        lease = f" ({fence.lease})" if fence.lease else ""
        raise LeaseLost(
            f"flow {flow_id}{lease}: a write of {fence.owner} (epoch {fence.epoch}) was refused: "
            f"the flow's lease is held by {holder}"
        )


class SqlMembers:
    """base.Members over the sessions of a SQL store."""

    def __init__(
        self, session: Callable[[], AbstractContextManager[Session]], dialect: SqlDialect
    ) -> None:
        self._session = session
        self._now = dialect.now

    def beat(self, owner: str, *, lease_s: float) -> list[str]:
        """See base.Members.beat."""
        with self._session() as db:
            db.execute(
                f"INSERT INTO schedulers (owner, expires) VALUES (?, {self._now} + ?) "
                "ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires",
                (owner, lease_s),
            )
            rows = db.execute(
                f"SELECT owner FROM schedulers WHERE expires >= {self._now} ORDER BY owner"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def dead(self) -> list[str]:
        """See base.Members.dead."""
        with self._session() as db:
            rows = db.execute(
                f"SELECT owner FROM schedulers WHERE expires < {self._now} ORDER BY owner"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def forget(self, owners: list[str]) -> None:
        """See base.Members.forget."""
        with self._session() as db:
            db.executemany("DELETE FROM schedulers WHERE owner = ?", [(o,) for o in owners])


class SqlCancels:
    """base.CancelRequests over the sessions of a SQL store."""

    def __init__(
        self, session: Callable[[], AbstractContextManager[Session]], dialect: SqlDialect
    ) -> None:
        self._session = session
        self._now = dialect.now

    def request_cancel(self, flow_id: str) -> None:
        """See base.CancelRequests.request_cancel."""
        with self._session() as db:
            db.execute(
                f"INSERT INTO cancels (flow_id, time) VALUES (?, {self._now}) "
                "ON CONFLICT (flow_id) DO NOTHING",
                (flow_id,),
            )

    def cancel_requests(self) -> list[str]:
        """See base.CancelRequests.cancel_requests."""
        with self._session() as db:
            rows = db.execute("SELECT flow_id FROM cancels ORDER BY time").fetchall()
        return [str(row[0]) for row in rows]

    def cancelled(self, flow_id: str) -> None:
        """See base.CancelRequests.cancelled."""
        with self._session() as db:
            db.execute("DELETE FROM cancels WHERE flow_id = ?", (flow_id,))
