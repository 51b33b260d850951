"""A PostgreSQL for the tests: a database of each test's own on a real server.

The server is ``DAGYO_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``;
when neither answers the test fails, saying how to start one (never skips).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOW_TO_START = (
    "no PostgreSQL for the tests: start one (`pg_ctlcluster $(ls /etc/postgresql) main start`, "
    "or `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`), or set "
    "DAGYO_TEST_POSTGRES_URL to a postgresql:// URL of a user that may create databases"
)


def admin_url() -> str:
    """The server's URL, on a database a test may create others from."""
    return os.environ.get("DAGYO_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL


def admin() -> psycopg.Connection[tuple[object, ...]]:
    """A connection in autocommit (CREATE DATABASE needs it); fails the test when none."""
    try:
        return psycopg.connect(admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"{HOW_TO_START} ({admin_url()}: {str(e).strip().splitlines()[0]})")


def url_of(database: str) -> str:
    """The admin URL with its database replaced."""
    base, _, _ = admin_url().rpartition("/")
    return f"{base}/{database}"


def terminate(database: str) -> int:
    """Close every connection to ``database`` from the server's side; how many there were."""
    with admin() as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A database of its own (``dagyo_test_…``), dropped afterwards; yields its URL."""
    name = f"dagyo_test_{uuid.uuid4().hex[:12]}"
    with admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        with admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
