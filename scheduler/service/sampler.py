"""The queue sampler: the depth of each running flow's stream queues, at a bounded rate.

One thread of the scheduler goes round the edges of every running flow and asks the broker
how many frames wait in each edge's stream queue (a passive declare: it creates nothing and
changes nothing). However many flows run, it makes at most ``rate_per_s`` declares a
second in all, and samples an edge at most once every ``interval_s``: a thousand edges
cost the broker what twenty do, each just sampled less often. The depths go into the flow
records (``EdgeProgress.queue_depth``), so ``dagyo flow status`` and the dashboard show
where a flow's items pile up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from executor.core.clock import SYSTEM_CLOCK, Clock
from executor.core.constants import stream_queue
from executor.core.errors import BrokerError

log = logging.getLogger("dagyo.scheduler")

# Passive declares a second, for all running flows together: the broker answers each on
# the scheduler's connection, which also carries every job event.
QUEUE_SAMPLES_PER_S = 20.0
# The shortest time between two samples of one edge.
QUEUE_SAMPLE_INTERVAL_S = 1.0


class QueueSampler:
    """Samples edge queue depths on one thread (:meth:`run`).

    Args:
        edges: flow id -> the targets (``node.port``) of its edges, for each running flow.
        depth: frames waiting in a queue; None when it is gone. May raise BrokerError.
        record: takes one flow's sampled depths (edge target -> frames waiting).
        rate_per_s: declares a second at most, in all.
        interval_s: the shortest time between two samples of one edge.
        clock: reads the time and paces the waits (tests give a virtual one).
    """

    def __init__(
        self,
        *,
        edges: Callable[[], Mapping[str, Sequence[str]]],
        depth: Callable[[str], int | None],
        record: Callable[[str, dict[str, int]], None],
        rate_per_s: float = QUEUE_SAMPLES_PER_S,
        interval_s: float = QUEUE_SAMPLE_INTERVAL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be above 0, got {rate_per_s:g}")
        self._edges = edges
        self._depth = depth
        self._record = record
        self._gap_s = 1.0 / rate_per_s
        self._interval_s = interval_s
        self._clock = clock

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run on a daemon thread of its own until ``stop`` is set; return the thread."""
        thread = threading.Thread(
            target=self.run, args=(stop,), name="dagyo-scheduler-sampler", daemon=True
        )
        thread.start()
        return thread

    def run(self, stop: threading.Event) -> None:
        """Sample round after round until ``stop`` is set."""
        next_declare = self._clock.monotonic()
        while not stop.is_set():
            round_started = self._clock.monotonic()
            try:
                next_declare = self._round(stop, next_declare)
            except BrokerError as e:
                log.debug("queue sampling waits for the broker: %s", e)
            except Exception:
                log.exception("sampling queue depths failed")
            self._clock.wait(
                stop, max(0.0, round_started + self._interval_s - self._clock.monotonic())
            )

    def _round(self, stop: threading.Event, next_declare: float) -> float:
        """Sample every edge once; return when the next declare may be made."""
        for flow_id, targets in list(self._edges().items()):
            depths: dict[str, int] = {}
            for target in targets:
                if self._clock.wait(stop, max(0.0, next_declare - self._clock.monotonic())):
                    return next_declare
                next_declare = self._clock.monotonic() + self._gap_s
                node, _, port = target.partition(".")
                depth = self._depth(stream_queue(flow_id, node, port))
                if depth is None:
                    break  # the flow ended meanwhile: its queues are gone
                depths[target] = depth
            if depths:
                self._record(flow_id, depths)
        return next_declare
