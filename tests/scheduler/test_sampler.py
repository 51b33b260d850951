"""The queue sampler: every edge of every running flow is sampled, never more often than
its interval, and at most its rate of passive declares per second in all.

The sampler runs on a virtual clock: its time moves only in its own waits, so each test
counts declares per second of the sampler's time, the same on every run.
"""

from __future__ import annotations

import threading

from executor.core.clock import VirtualClock
from executor.core.errors import BrokerError
from scheduler.service.sampler import QueueSampler


def test_it_samples_every_edge_and_never_declares_faster_than_its_rate() -> None:
    # 200 edges and 16 declares/s: a round takes 12.5 s, however short the interval.
    flows = {f"flow{i}": [f"n{j}.in" for j in range(20)] for i in range(10)}
    clock = VirtualClock()
    stop = threading.Event()
    declared: list[tuple[float, str]] = []
    seen: dict[str, dict[str, int]] = {}

    def depth(queue: str) -> int:
        declared.append((clock.monotonic(), queue))
        if clock.monotonic() >= 20.0:
            stop.set()
        return len(queue)

    def record(flow_id: str, depths: dict[str, int]) -> None:
        seen.setdefault(flow_id, {}).update(depths)

    sampler = QueueSampler(
        edges=lambda: flows,
        depth=depth,
        record=record,
        rate_per_s=16.0,
        interval_s=0.25,
        clock=clock,
    )
    sampler.run(stop)

    times = [t for t, _ in declared]
    assert times == [k / 16 for k in range(20 * 16 + 1)]
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) == 16
    every_queue = {f"dagyo.flow.{f}.in.{t}" for f, targets in flows.items() for t in targets}
    assert {queue for _, queue in declared} == every_queue
    assert seen == {
        f: {t: len(f"dagyo.flow.{f}.in.{t}") for t in targets} for f, targets in flows.items()
    }


def test_a_small_cluster_is_sampled_every_interval_and_a_broker_error_skips_a_round() -> None:
    flows = {"f": ["b.text"]}
    clock = VirtualClock()
    stop = threading.Event()
    calls: list[float] = []
    recorded: list[tuple[float, dict[str, int]]] = []

    def depth(queue: str) -> int | None:
        now = clock.monotonic()
        calls.append(now)
        if now >= 2.0:
            stop.set()
        if 1.0 <= now < 1.5:
            raise BrokerError("not connected to the broker")
        return 4

    sampler = QueueSampler(
        edges=lambda: flows,
        depth=depth,
        record=lambda _flow, depths: recorded.append((clock.monotonic(), dict(depths))),
        rate_per_s=1024.0,
        interval_s=0.25,
        clock=clock,
    )
    sampler.run(stop)

    # One edge: once per interval, not as fast as the rate allows.
    assert calls == [k * 0.25 for k in range(9)]
    # The rounds the broker failed (at 1.0 and 1.25) recorded nothing.
    assert recorded == [(t, {"b.text": 4}) for t in (0.0, 0.25, 0.5, 0.75, 1.5, 1.75, 2.0)]


def test_a_stop_ends_the_sampler_thread_in_the_middle_of_its_wait() -> None:
    sampler = QueueSampler(
        edges=lambda: {"f": ["b.text"]}, depth=lambda _queue: 1, record=lambda *_: None
    )
    stop = threading.Event()
    thread = sampler.start(stop)
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "the sampler did not stop"
