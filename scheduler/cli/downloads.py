"""Writing a downloaded export's items to files (`dagyo flow export`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from scheduler.cli.common import EXIT_FAILED, EXIT_OK
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb


def write_items(chunks: Iterator[pb.ExportChunk], export: str, out: Path) -> int:
    """Write each item of ``chunks`` to ``out/EXPORT-N.binpb``, checking its SHA-256; print
    a JSON line per item. Returns the exit status (1 when an item does not match)."""
    status = EXIT_OK
    handle: IO[bytes] | None = None
    sha = hashlib.sha256()
    size = 0
    for chunk in chunks:
        path = out / f"{export}-{chunk.item}.binpb"
        if handle is None:
            handle, sha, size = path.open("wb"), hashlib.sha256(), 0
        handle.write(chunk.data)
        sha.update(chunk.data)
        size += len(chunk.data)
        if not chunk.item_end:
            continue
        handle.close()
        handle = None
        line = {
            "export": export,
            "item": chunk.item,
            "file": str(path),
            "typename": chunk.typename,
            "size": size,
            "sha256": sha.hexdigest(),
        }
        click.echo(json.dumps(line))
        if (size, sha.hexdigest()) != (chunk.size, chunk.sha256):
            click.echo(
                f"dagyo: {path}: {size} bytes of SHA-256 {sha.hexdigest()}, not the "
                f"{chunk.size} bytes of SHA-256 {chunk.sha256} exported",
                err=True,
            )
            status = EXIT_FAILED
    if handle is not None:
        handle.close()
    return status
