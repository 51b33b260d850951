"""The store in one SQLite file (or ``:memory:``): the default, for one scheduler.

One connection shared by every thread, one lock around each transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from executor.core.errors import DagyoError
from scheduler.service.store.migrations import SQLITE, claim, migrate
from scheduler.service.store.session import Session
from scheduler.service.store.sql import SqlStore


class SqliteStore(SqlStore):
    """The scheduler's state in one SQLite database.

    Args:
        path: the database file (its folder is created), or ``:memory:``.
        owner: the broker this scheduler serves (``broker_identity``); the first owner is
            recorded in the file and any other is refused.

    Raises:
        DagyoError: the file cannot be opened, belongs to another broker's scheduler, or
            was migrated by a newer scheduler (SchemaTooNew).
    """

    row_id = "rowid"

    def __init__(self, path: str, *, owner: str = "") -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if path != ":memory:":
                # WAL lets readers and the writer overlap; NORMAL sync is still safe against
                # a crash of this process, the failure a scheduler restart has to survive.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise DagyoError(
                f"cannot open the scheduler state at {path} ({e}): set DAGYO_STATE to a "
                "writable file, or to :memory:"
            ) from e
        try:
            with self.session() as db:
                _add_tenant(db)
                migrate(db, SQLITE, where=path)
                recorded = claim(db, owner) if owner else owner
        except sqlite3.Error as e:
            self._db.close()
            raise DagyoError(
                f"cannot open the scheduler state at {path} ({e}): set DAGYO_STATE to a "
                "writable file, or to :memory:"
            ) from e
        except DagyoError:
            self._db.close()
            raise
        if recorded != owner:
            self._db.close()
            raise DagyoError(
                f"the state file {path} belongs to the scheduler of {recorded}, not {owner}: "
                "give this scheduler a state file of its own (--state or DAGYO_STATE)"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on the one connection, under the lock."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()


def _add_tenant(db: Session) -> None:
    """Give the flows of a file written before tenants existed their column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(flows)").fetchall()}
    if columns and "tenant" not in columns:
        db.execute("ALTER TABLE flows ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
