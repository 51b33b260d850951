"""``dagyo cache list`` and ``dagyo cache drop``: the cached results of deterministic nodes.

It parses arguments and calls: without ``--local`` the scheduler at DAGYO_SCHEDULER (its
cache, as the caller's tenant sees it); with ``--local``, :mod:`scheduler.cache` on
`dagyo run`'s cache folder (DAGYO_CACHE_DIR).
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

import click

from executor.core.errors import DagyoError
from scheduler.cli.common import EXIT_INVALID, connected, fail, json_option, scheduler_option

if TYPE_CHECKING:
    from scheduler.cache import FolderCache
    from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb

local_option = click.option(
    "--local",
    is_flag=True,
    help="Act on `dagyo run`'s cache folder (DAGYO_CACHE_DIR, default ~/.cache/dagyo/cache) "
    "instead of the scheduler's cache.",
)


@click.group("cache")
def cache() -> None:
    """The cached results of deterministic nodes (docs/cache.md): the scheduler's, as your
    tenant sees them, or with --local `dagyo run`'s."""


@cache.command("list")
@json_option
@local_option
@scheduler_option
def list_command(as_json: bool, local: bool, address: str) -> None:
    """List the cached results, most recently used first: key, progdef@version, the flow and
    node that made it, size, made, last used and hits (--json: one object a line)."""
    if local:
        entries = [entry.to_json() for entry in _folder().entries()]
    else:
        with connected(address) as client:
            entries = [_entry_json(entry) for entry in client.cache_list()]
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry, sort_keys=True))
        else:
            hits = entry["hits"]
            click.echo(
                f"{entry['key']}  {entry['progdef']}@{entry['version']}  "
                f"{entry['flow']}/{entry['node']}  {entry['size']} B  "
                f"made {_when(entry['made'])}  used {_when(entry['last_used'])}  "
                f"{hits} hit{'s' if hits != 1 else ''}"
            )


@cache.command("drop")
@click.argument("selector", metavar="[PROGDEF[@VERSION] | KEY]", default="")
@local_option
@scheduler_option
def drop_command(selector: str, local: bool, address: str) -> None:
    """Remove the cached results of PROGDEF (of one VERSION), or the entry KEY; every
    entry without an argument. Prints how many were dropped on stderr."""
    if local:
        count = len(_folder().drop(selector))
    else:
        with connected(address) as client:
            count = len(client.cache_drop(selector))
    click.echo(f"dropped {count} cached result{'s' if count != 1 else ''}", err=True)


def _folder() -> FolderCache:
    from scheduler.cache import CacheSettings, FolderCache  # noqa: F811

    try:
        return FolderCache(CacheSettings.from_env())
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)


def _entry_json(entry: pb.CacheEntry) -> dict[str, Any]:
    """A scheduler's entry as ``--json`` shows it (the keys of a local entry's)."""
    return {
        "key": entry.key,
        "progdef": entry.progdef,
        "version": entry.version,
        "flow": entry.flow,
        "node": entry.node,
        "size": entry.size,
        "made": entry.made,
        "last_used": entry.last_used,
        "hits": entry.hits,
        "tenant": entry.tenant,
    }


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
