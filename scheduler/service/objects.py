"""A flow's offloaded items: deleted when the flow ends, and swept at a start.

Items an executor offloaded (docs/protocol.md, Offloaded items) live under the flow's
prefix ``flows/{flow}/`` of the object store. The scheduler deletes that prefix once the
flow's end is recorded, whatever the end; a scheduler that starts deletes the prefixes of
flows its state records as ended (those whose end a crash left undeleted). A prefix of a
flow its state does not know is left alone: it may be another cluster's on the same store.
Deletes run on a thread of their own, never on the broker's.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from executor.core.constants import OBJECTS_FLOWS_PREFIX
from executor.core.errors import DagyoError
from executor.core.objects import ObjectStore
from executor.core.offload import flow_prefix

log = logging.getLogger("dagyo.scheduler.objects")


class FlowObjects:
    """Deletes flows' objects in the background.

    Args:
        store: the object store (DAGYO_OBJECTS).
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._todo: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="dagyo-objects", daemon=True)
        self._thread.start()

    def delete(self, flow_id: str) -> None:
        """Delete the objects of a flow that ended (soon, on the objects thread)."""
        self._todo.put(lambda: self._delete(flow_id))

    def sweep(self, ended: Callable[[str], bool]) -> None:
        """Delete the objects of every flow for which ``ended(flow_id)`` is true."""
        self._todo.put(lambda: self._sweep(ended))

    def join(self) -> None:
        """Wait until what was asked so far is done (tests, a stop)."""
        done = threading.Event()
        self._todo.put(done.set)
        done.wait()

    def close(self) -> None:
        """Finish what was asked, then end the thread."""
        self._todo.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while (task := self._todo.get()) is not None:
            try:
                task()
            except DagyoError as e:
                log.warning("offloaded items not deleted: %s", e)

    def _delete(self, flow_id: str) -> None:
        count = self.store.delete_prefix(flow_prefix(flow_id))
        if count:
            log.info("flow %s: deleted its %d offloaded items", flow_id, count)

    def _sweep(self, ended: Callable[[str], bool]) -> None:
        for flow_id in self.store.children(OBJECTS_FLOWS_PREFIX):
            if ended(flow_id):
                self._delete(flow_id)
