"""What the SQL stores run their statements through: one transaction, ``?`` placeholders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Rows(Protocol):
    """What a statement gives back."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every row left."""


class Session(Protocol):
    """One transaction of a store (``?`` placeholders)."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Rows:
        """Run one statement."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each row of arguments."""
