"""Queues declared ahead of the flows that will use them (docs/protocol.md, "Queues declared
ahead").

Declaring a flow's queues is the largest part of a submit: RabbitMQ creates a queue in
about a millisecond of its own time, and a small broker does not create many at once. So
once a flow of some *shape* (its queue names without the ``dagyo.flow.{flow}.`` prefix) has
been submitted, the scheduler declares the queues of one more flow of that shape under a
fresh flow id, in the background: the *spare*. The next submit of that shape takes the
spare's flow id, and its queues exist already. The names stay what they always are
(``dagyo.flow.{flow}.in.{node}.{port}``), so nothing on the wire changes.

Bounds: one spare per shape, SPARE_SHAPES shapes at most (the least recently submitted goes
first), and a shape's spare is deleted once no flow of that shape came for ``idle_s``.
Every spare is noted in the state before its queues are declared, so a scheduler that died
with spares ready deletes them at its next start; a stopping scheduler deletes its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from executor.core.constants import export_queue, flow_queue, shard_of, stream_queue
from executor.core.errors import BrokerError
from scheduler.flow.model import CheckedFlow, Endpoint

if TYPE_CHECKING:
    from scheduler.service.broker import Broker
    from scheduler.service.store import SpareRecords

log = logging.getLogger("dagyo.scheduler.spares")

# Shapes kept ready at once, at most: each costs the broker its queues while it waits.
SPARE_SHAPES = 4
# A spare whose queues the broker has not all made within this long is given up (a refused
# declare closed its lane) and deleted.
SPARE_MADE_S = 10.0

# A flow's queue names without their "dagyo.flow.{flow}." prefix, in the plan's order.
Shape = tuple[str, ...]


def new_flow_id(shards: Sequence[str] = ()) -> str:
    """A fresh flow id: 12 lowercase hex characters (docs/protocol.md), in one of
    ``shards`` (its first character) when given."""
    fresh = uuid.uuid4().hex[:12]
    return random.choice(shards) + fresh[1:] if shards else fresh


class Owned(Protocol):
    """The shards a scheduler owns (scheduler.service.shards.Shards)."""

    owner: str
    lease_s: float

    def owned(self) -> list[str]:
        """The shards owned now."""

    def wait_owned(self, timeout_s: float) -> list[str]:
        """The shards owned, waiting up to ``timeout_s`` for one."""


def shape_of(flow_id: str, queues: Sequence[str]) -> Shape:
    """The shape of a flow's queues (see Shape)."""
    prefix = flow_queue(flow_id, "")
    return tuple(queue.removeprefix(prefix) for queue in queues)


def queue_shape(checked: CheckedFlow, recorded: Iterable[Endpoint] = ()) -> Shape:
    """The shape of the queues ``plan_flow`` gives a flow, known before its flow id (so a
    submit looks for a spare first, and plans once with the flow id it gets).

    Args:
        recorded: the cacheable outputs with a recording queue, which the cache adds to
            the plan's (scheduler.service.recording.recorded).
    """
    streams = [
        stream_queue("", node, port)
        for node in checked.order
        for port in checked.progdefs[node].inputs
        if checked.source_of(Endpoint(node, port)) is not None
    ]
    records = [flow_queue("", f"record.{o.node}.{o.port}") for o in recorded]
    exports = [export_queue("", name) for name in checked.flow.exports]
    return shape_of("", streams + records + exports)


def queues_of(flow_id: str, shape: Shape) -> list[str]:
    """The queue names of a flow of ``shape``."""
    return [flow_queue(flow_id, rest) for rest in shape]


@dataclass(frozen=True)
class _Spare:
    flow_id: str
    shape: Shape


class Spares:
    """The spares of one scheduler: taken by submits, tended by their own thread.

    Args:
        idle_s: a shape's spare is deleted once no flow of that shape came this long;
            0 keeps no spares at all.
    """

    def __init__(
        self,
        broker: Broker,
        store: SpareRecords,
        *,
        idle_s: float,
        shards: Owned | None = None,
        alone: bool = True,
    ) -> None:
        self._shards = shards
        self._owner = shards.owner if shards is not None else ""
        self._alone = alone
        self._broker = broker
        self._store = store
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._ready: dict[Shape, _Spare] = {}
        self._making: dict[Shape, tuple[_Spare, float]] = {}  # declared, not all made yet
        self._wanted: OrderedDict[Shape, float] = OrderedDict()  # -> last submitted (monotonic)
        self._doomed: list[_Spare] = []  # to delete once the broker is there
        self._taken: list[str] = []  # their rows to forget
        self._wake = threading.Event()
        self._pass = threading.Lock()

    def take(self, shape: Shape) -> str | None:
        """The flow id of a spare of ``shape`` (its queues exist), or None; either way the
        next flow of that shape will find one."""
        if not self._idle_s or not shape:
            return None
        with self._lock:
            spare = self._ready.pop(shape, None)
            self._wanted[shape] = time.monotonic()
            self._wanted.move_to_end(shape)
            while len(self._wanted) > SPARE_SHAPES:
                oldest, _ = self._wanted.popitem(last=False)
                if oldest in self._ready:
                    self._doomed.append(self._ready.pop(oldest))
            if spare is not None and not self._ours(spare.flow_id):
                self._doomed.append(spare)  # of a shard given up since: not for our flows
                spare = None
            if spare is not None:
                self._taken.append(spare.flow_id)
        return spare.flow_id if spare is not None else None

    def fresh_id(self) -> str:
        """A new flow id of a shard this scheduler owns.

        Raises:
            BrokerError: when it owns none, even after waiting a lease for one.
        """
        if self._shards is None:
            return new_flow_id()
        owned = self._shards.wait_owned(self._shards.lease_s)
        if not owned:
            raise BrokerError(
                "this scheduler owns no shard of flows (it has just started, or cannot reach "
                "its state): submit again, or to another scheduler"
            )
        return new_flow_id(owned)

    def _ours(self, flow_id: str) -> bool:
        return self._shards is None or shard_of(flow_id) in self._shards.owned()

    def delete_of(self, owners: list[str]) -> None:
        """Delete the spares of schedulers that died (their membership ran out)."""
        rows = self._store.spares(owners)
        for _, queues, taken in rows:
            if not taken:
                self._broker.delete_queues(queues)
        if rows:
            self._store.remove_spares([flow_id for flow_id, _, _ in rows])

    def submitted(self) -> None:
        """A submit is done with the broker: make the spares it asked for now (not before:
        the broker would make their queues while it routes that submit's jobs)."""
        self._wake.set()

    def disconnected(self) -> None:
        """The broker went away, and may have lost the spares' queues: none is ready now."""
        with self._lock:
            self._doomed.extend(self._ready.values())
            self._doomed.extend(spare for spare, _ in self._making.values())
            self._ready.clear()
            self._making.clear()

    def loop(self, stop: threading.Event) -> None:
        """Delete what a previous scheduler left, then tend the spares until ``stop``."""
        if not self._idle_s:
            return
        left = True
        while not stop.is_set():
            try:
                if left:
                    self._delete_left()
                    left = False
                self.tend()
            except BrokerError as e:
                log.debug("spares wait for the broker: %s", e)
            except Exception:
                log.exception("tending the spares failed")
            self._wake.wait(min(self._idle_s / 2, 1.0))
            self._wake.clear()

    def close(self) -> None:
        """Delete every spare's queues (the scheduler stops); its rows go with them."""
        with self._lock:
            doomed = [*self._doomed, *self._ready.values()]
            doomed += [spare for spare, _ in self._making.values()]
            self._doomed, self._ready, self._making = [], {}, {}
            self._wanted.clear()
        try:
            self._delete(doomed)
        except BrokerError as e:
            log.warning("left spares for the next start to delete: %s", e)

    def _delete_left(self) -> None:
        """Delete the spares a scheduler left that no flow took (it died with them ready).

        Only a lone scheduler (a SQLite state): among several, the leader deletes those of
        each scheduler whose membership ran out (:meth:`delete_of`).
        """
        if not self._alone:
            return
        rows = self._store.spares()
        for _, queues, taken in rows:
            if not taken:
                self._broker.delete_queues(queues)
        if rows:
            self._store.remove_spares([flow_id for flow_id, _, _ in rows])

    def tend(self) -> None:
        """One pass, done when it returns: delete the spares that idled out or were given up,
        and make the wanted ones missing. Passes run one at a time (the spares' thread, or
        a caller that needs one done now)."""
        with self._pass:
            self._tend()

    def _tend(self) -> None:
        if not self._broker.connected:
            return
        now = time.monotonic()
        with self._lock:
            taken, self._taken = self._taken, []
            for shape, last in list(self._wanted.items()):
                if now - last >= self._idle_s:  # no flow of this shape came for idle_s
                    del self._wanted[shape]
                    if shape in self._ready:
                        self._doomed.append(self._ready.pop(shape))
            for shape, (spare, since) in list(self._making.items()):
                if now - since >= SPARE_MADE_S:
                    del self._making[shape]
                    self._doomed.append(spare)
            doomed, self._doomed = self._doomed, []
            missing = [
                shape
                for shape in self._wanted
                if shape not in self._ready and shape not in self._making
            ]
        if taken:
            self._store.remove_spares(taken)
        self._delete(doomed)
        for shape in missing:
            self._make(shape)

    def _make(self, shape: Shape) -> None:
        owned = self._shards.owned() if self._shards is not None else []
        if self._shards is not None and not owned:
            return
        spare = _Spare(new_flow_id(owned), shape)
        queues = queues_of(spare.flow_id, shape)
        # First: a crash leaves a row, not queues.
        self._store.add_spare(spare.flow_id, queues, owner=self._owner)
        with self._lock:
            self._making[shape] = (spare, time.monotonic())
        try:
            # Without waiting: the broker's I/O thread goes on with the flows meanwhile.
            self._broker.declare_ahead(queues, partial(self._made, spare))
        except BrokerError:
            with self._lock:  # some of them may exist: delete them once the broker is back
                if self._making.get(shape, (None, 0.0))[0] == spare:
                    del self._making[shape]
                self._doomed.append(spare)
            raise

    def _made(self, spare: _Spare) -> None:
        """Every queue of ``spare`` exists (on the broker's I/O thread)."""
        with self._lock:
            if self._making.get(spare.shape, (None, 0.0))[0] != spare:
                return  # given up meanwhile (a lost connection, or too slow): doomed already
            del self._making[spare.shape]
            if spare.shape in self._wanted and spare.shape not in self._ready:
                self._ready[spare.shape] = spare
                return
            self._doomed.append(spare)  # no longer wanted meanwhile
        self._wake.set()

    def _delete(self, spares: Sequence[_Spare]) -> None:
        if not spares:
            return
        queues = [q for spare in spares for q in queues_of(spare.flow_id, spare.shape)]
        self._broker.delete_queues(queues)
        self._store.remove_spares([spare.flow_id for spare in spares])
