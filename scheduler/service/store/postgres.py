"""The store in PostgreSQL (``DAGYO_STATE=postgresql://user@host:5432/db``).

psycopg 3 and its connection pool, imported only when a scheduler opens such a store (an
executor never does). The pool checks a connection before lending it, so one the server
closed (a restart, ``pg_terminate_backend``) is replaced, not used; a call made while the
server is away raises :class:`StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from executor.core.errors import DagyoError, redact_url
from scheduler.errors import StoreUnavailable
from scheduler.service.store.leases import SqlDialect
from scheduler.service.store.migrations import POSTGRES, claim, migrate
from scheduler.service.store.session import Rows, Session
from scheduler.service.store.sql import SqlStore

# Connections a scheduler holds at most: its writer, the admission and the API's readers
# share them; a caller waits for a free one up to CONNECTION_WAIT_S.
POOL_SIZE = 8
CONNECTION_WAIT_S = 30.0
# How long opening waits for the database before the scheduler gives up (exit 3).
CONNECT_TIMEOUT_S = 10
# A session idle inside a transaction this long is ended by the server, its row locks
# released: a scheduler paused (SIGSTOP, a stall) mid-write must not hold the lease rows
# the others need to take its shards over.
IDLE_IN_TRANSACTION_MS = 2000
# Serialises schedulers that migrate one database at the same time.
_MIGRATION_LOCK = 0x646167796F  # "dagyo"


class PostgresStore(SqlStore):
    """The scheduler's state in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database`` (or ``postgres://``).
        owner: the broker this scheduler serves (``broker_identity``), as SqliteStore.

    Raises:
        StoreUnavailable: the URL is malformed or the database does not answer (the
            message names it without its password).
        DagyoError: the database belongs to another broker's schedulers, or was migrated
            by a newer scheduler (SchemaTooNew).
    """

    row_id = "seq"
    dialect = SqlDialect(
        now="CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)",
        for_update=" FOR UPDATE",
        lock_timeout="SET LOCAL lock_timeout = '500ms'",
    )

    def __init__(self, url: str, *, owner: str = "") -> None:
        self.url = url
        self._where = redact_url(url)
        try:  # one plain connection first: its error says why, a pool's only that it waited
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as e:
            raise StoreUnavailable(self._where, self._reason(e)) from e
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            timeout=CONNECTION_WAIT_S,
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            },
            name="dagyo-state",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            with self.session() as db:
                db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                migrate(db, POSTGRES, where=self._where)
                recorded = claim(db, owner) if owner else owner
        except (psycopg_pool.PoolTimeout, DagyoError):
            self._pool.close()
            raise
        if recorded != owner:
            self._pool.close()
            raise DagyoError(
                f"the database {self._where} holds the state of the schedulers of {recorded}, "
                f"not {owner}: give these schedulers a database of their own (DAGYO_STATE)"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on a pooled connection."""
        try:
            with self._pool.connection() as connection:
                yield _Session(connection)
        except (
            psycopg.OperationalError,
            psycopg_pool.PoolTimeout,
            # The server ended a session idle in its transaction (a paused scheduler): the
            # transaction is lost, the write is to be made again (and fenced again).
            psycopg.errors.IdleInTransactionSessionTimeout,
        ) as e:
            raise StoreUnavailable(self._where, self._reason(e)) from e

    def close(self) -> None:
        """Close every pooled connection (idempotent)."""
        self._pool.close()

    def ping(self, timeout_s: float) -> None:
        """Ask the database for nothing, on a pooled connection checked before use.

        Raises:
            StoreUnavailable: no connection within ``timeout_s``, or the query failed.
        """
        try:
            with self._pool.connection(timeout=timeout_s) as connection:
                connection.execute("SELECT 1")
        except psycopg_pool.PoolTimeout as e:
            # The pool says only that it waited: a connection of our own says why.
            try:
                psycopg.connect(self.url, connect_timeout=max(1, int(timeout_s))).close()
            except psycopg.Error as why:
                raise StoreUnavailable(self._where, self._reason(why)) from e
            raise StoreUnavailable(self._where, self._reason(e)) from e
        except psycopg.Error as e:
            raise StoreUnavailable(self._where, self._reason(e)) from e

    def _reason(self, error: Exception) -> str:
        """The first line of a driver's error, never holding the URL's password."""
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = lines[0].strip()
        password = _password(self.url)
        return reason.replace(password, "***") if password else reason


class _Session:
    """A connection seen as a Session: ``?`` placeholders become psycopg's ``%s``."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Rows:
        return self._connection.execute(sql.replace("?", "%s"), args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)


def _password(url: str) -> str:
    userinfo = url.partition("://")[2].rpartition("@")[0]
    return userinfo.partition(":")[2]
