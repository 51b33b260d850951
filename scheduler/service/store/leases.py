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

    def __init__(self, *, now: str, for_update: str) -> None:
        self.now = now
        self.for_update = for_update


class SqlLeases:
    """base.FlowLeases over the sessions of a SQL store."""

    def __init__(
        self, session: Callable[[], AbstractContextManager[Session]], dialect: SqlDialect
    ) -> None:
        self._session = session
        self._now = dialect.now

    def acquire(self, flow_id: str, owner: str, *, lease_s: float) -> int | None:
        """See base.FlowLeases.acquire."""
        now = self._now
        with self._session() as db:
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
        (flow_id,),
    ).fetchone()
    if row is None or (str(row[0]), int(row[1])) != (fence.owner, fence.epoch):
        holder = "nobody" if row is None else f"{row[0]} (epoch {row[1]})"
        raise LeaseLost(
            f"flow {flow_id}: a write of {fence.owner} (epoch {fence.epoch}) was refused: "
            f"the flow's lease is held by {holder}"
        )
