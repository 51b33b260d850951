"""The executor's job code for a runner in the caller's own process.

The embedded runner (``dagyo run``) runs every job of a flow in one process with the same
code as a cluster executor; only the transport differs. This module is its one door into
the executor's private runtime:

* :class:`StreamSettings` (with :class:`FrameForm`) says how frames are made and bounded,
  :class:`Flusher` is the one thread that flushes lingering frames, and
  :class:`MemoryTransport` carries them between the jobs;
* a :class:`JobRun` is one job; :func:`execute` runs it to its end with the
  :class:`Program` :func:`load_program` loads, and returns its failure report, if any;
  :func:`check_code` imports each progdef's code at catalogue load, to check it;
* :class:`Exports` reads the flow's exports as a scheduler does, their items checked;
* :func:`tune_gc` tunes the collector of a process that streams items.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from executor._runtime.flusher import Flusher
from executor._runtime.inbox import Inbox
from executor._runtime.job import JobRun, execute
from executor._runtime.program import Program, check_code, load_program
from executor._runtime.stream import StreamSettings, tune_gc
from executor._runtime.transport.base import Transport
from executor._runtime.transport.memory import MemoryTransport
from executor.core.frames import FrameForm
from executor.core.types import message_class
from executor.inputs import Fetch, InputStream, merge

__all__ = [
    "Exports",
    "Flusher",
    "FrameForm",
    "JobRun",
    "MemoryTransport",
    "Program",
    "StreamSettings",
    "check_code",
    "execute",
    "load_program",
    "tune_gc",
]


class Exports:
    """A flow's exports, read in this process: iterate it for ``(export, item)`` as items
    arrive, each export's in the order they were sent, until every export has ended.

    Args:
        transport: the transport the flow's jobs send on.
        stop: set to stop reading: the iteration then raises Stopped.
    """

    def __init__(self, transport: Transport, *, stop: threading.Event) -> None:
        self._inbox = Inbox(stop)
        self._streams = transport.open(stop=stop)
        self._exports: list[InputStream] = []

    def add(
        self, name: str, *, queue: str, edge: str, typename: str, fetch: Fetch | None = None
    ) -> None:
        """Read export ``name`` from ``queue``; ``edge`` names it in errors; ``fetch`` reads
        its offloaded items (see executor.core.offload.fetch)."""
        self._inbox.add_port(name)
        self._exports.append(
            InputStream(
                port=name,
                edge=edge,
                inbox=self._inbox,
                message_class=message_class(typename),
                fetch=fetch,
            )
        )
        self._streams.attach(queue, self._inbox, name)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(export, item)``; once all ended, check that no item was changed after
        it was sent (checked frames).

        Raises:
            Stopped: when ``stop`` is set.
            DecodeError: an item does not decode, or was changed after it was sent.
        """
        yield from merge(self._inbox, self._exports)
        for export in self._exports:
            export.check_unchanged()

    def wake(self) -> None:
        """Wake the reader so it sees ``stop`` at once."""
        self._inbox.wake()
