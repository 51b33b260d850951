"""``dagyo cache list`` and ``dagyo cache drop``: the cached results of deterministic nodes.

It parses arguments and calls :mod:`scheduler.cache`. With ``--local`` they act on
`dagyo run`'s cache folder (DAGYO_CACHE_DIR); the scheduler's cache is not served yet, so
without it they say so and exit 2.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING

import click

from executor.core.errors import DagyoError
from scheduler.cli.common import EXIT_INVALID, fail, json_option

if TYPE_CHECKING:
    from scheduler.cache import FolderCache

local_option = click.option(
    "--local",
    is_flag=True,
    help="Act on `dagyo run`'s cache folder (DAGYO_CACHE_DIR, default ~/.cache/dagyo/cache).",
)


@click.group("cache")
def cache() -> None:
    """The cached results of deterministic nodes (docs/cache.md)."""


@cache.command("list")
@json_option
@local_option
def list_command(as_json: bool, local: bool) -> None:
    """List the cached results, most recently used first: key, progdef@version, the node
    of the flow that made it, size, made, last used and hits (--json: one object a line)."""
    for entry in _folder(local).entries():
        if as_json:
            click.echo(json.dumps(entry.to_json(), sort_keys=True))
        else:
            click.echo(
                f"{entry.key}  {entry.progdef}@{entry.version}  {entry.flow}/{entry.node}  "
                f"{entry.size} B  made {_when(entry.made)}  used {_when(entry.last_used)}  "
                f"{entry.hits} hit{'s' if entry.hits != 1 else ''}"
            )


@cache.command("drop")
@click.argument("selector", metavar="[PROGDEF[@VERSION] | KEY]", default="")
@local_option
def drop_command(selector: str, local: bool) -> None:
    """Remove the cached results of PROGDEF (of one VERSION), or the entry KEY; every
    entry without an argument. Prints how many were dropped on stderr."""
    dropped = _folder(local).drop(selector)
    click.echo(f"dropped {len(dropped)} cached result{'s' if len(dropped) != 1 else ''}", err=True)


def _folder(local: bool) -> FolderCache:
    if not local:
        fail(
            "the scheduler's cache is not served yet: add --local to act on "
            "`dagyo run`'s cache folder",
            EXIT_INVALID,
        )
    from scheduler.cache import CacheSettings, FolderCache  # noqa: F811

    try:
        return FolderCache(CacheSettings.from_env())
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
