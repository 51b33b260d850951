"""The queue sampler: every edge of every running flow is sampled, never more often than
its interval, and at most its rate of passive declares per second in all."""

from __future__ import annotations

import threading
import time

from executor.core.errors import BrokerError
from scheduler.service.sampler import QueueSampler


def test_it_samples_every_edge_and_never_declares_faster_than_its_rate() -> None:
    # 200 edges and 20 declares/s: a second samples about 20 of them, never 200.
    flows = {f"flow{i}": [f"n{j}.in" for j in range(20)] for i in range(10)}
    declared: list[tuple[float, str]] = []
    seen: dict[str, dict[str, int]] = {}

    def depth(queue: str) -> int:
        declared.append((time.monotonic(), queue))
        return len(queue)

    def record(flow_id: str, depths: dict[str, int]) -> None:
        seen.setdefault(flow_id, {}).update(depths)

    sampler = QueueSampler(
        edges=lambda: flows,
        depth=depth,
        record=record,
        rate_per_s=20.0,
        interval_s=0.1,
    )
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run, args=(stop,), daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(1.5)
    stop.set()
    thread.join(5)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), "the sampler did not stop"
    assert 10 <= len(declared) <= 20 * elapsed + 1, len(declared)
    # In any one second, at most the rate.
    times = [t for t, _ in declared]
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 21
    assert all(len(depths) > 0 for depths in seen.values())
    assert {queue for _, queue in declared} <= {
        f"dagyo.flow.{f}.in.{t}" for f, targets in flows.items() for t in targets
    }


def test_a_small_cluster_is_sampled_every_interval_and_a_broker_error_skips_a_round() -> None:
    flows = {"f": ["b.text"]}
    calls: list[float] = []
    recorded: list[dict[str, int]] = []
    fail = threading.Event()

    def depth(queue: str) -> int | None:
        calls.append(time.monotonic())
        if fail.is_set():
            raise BrokerError("not connected to the broker")
        return 4

    sampler = QueueSampler(
        edges=lambda: flows,
        depth=depth,
        record=lambda _flow, depths: recorded.append(dict(depths)),
        rate_per_s=1000.0,
        interval_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(1.05)
    fail.set()
    time.sleep(0.5)
    stop.set()
    thread.join(5)
    # One edge: once per interval, not as fast as the rate allows.
    assert 4 <= len(calls) <= 9, calls
    assert recorded and all(r == {"b.text": 4} for r in recorded)
    assert len(recorded) < len(calls)  # the failed rounds recorded nothing
