"""The Ray contender: source -> greet -> count as a Ray user would write it, no dagyo.

One warm actor per stage; items travel as protobuf-serialized batches of --batch items (a
message of ``repeated dagyo.types.Text items = 1``, parsed in one call); the driver keeps at
most --in-flight batches in flight with ``ray.wait``. ``ray.init(num_cpus=2)``, the actors'
start and a warm-up batch are not timed. Needs Ray: ``pip install -e '.[bench]'``.

Prints one JSON line: {"items": N, "seconds": …, "items_per_s": …, "batch": …, …}.

Usage:
    python bench/ray_pipeline.py --items 300000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

BATCH_ITEMS = 2000
IN_FLIGHT = 16


def batch_class() -> type:
    """A message of ``repeated dagyo.types.Text items = 1``: one batch, one parse."""
    from executor.core.types import frame_class

    return frame_class("dagyo.types.Text")


class Source:
    """Makes the names of one batch."""

    def __init__(self) -> None:
        self.batch = batch_class()

    def names(self, start: int, stop: int) -> bytes:
        from executor.core.types import Text

        return self.batch(
            items=[Text(text=f"name-{i}") for i in range(start, stop)]
        ).SerializeToString()


class Greet:
    """Greets every name of a batch."""

    def __init__(self) -> None:
        self.batch = batch_class()

    def greet(self, data: bytes) -> bytes:
        from executor.core.types import Text

        names = self.batch.FromString(data).items
        return self.batch(items=[Text(text="hello " + n.text) for n in names]).SerializeToString()


class Count:
    """Counts the items of every batch."""

    def __init__(self) -> None:
        self.batch = batch_class()
        self.total = 0

    def add(self, data: bytes) -> int:
        self.total += len(self.batch.FromString(data).items)
        return self.total

    def reset(self) -> None:
        self.total = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=BATCH_ITEMS, help="items per batch")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="batches in flight")
    args = parser.parse_args()
    try:
        import ray
    except ImportError:
        sys.exit("bench/ray_pipeline.py needs Ray: pip install -e '.[bench]'")
    # The actors import executor.core.types: dagyo is installed, as for every other contender.
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    source = ray.remote(Source).remote()
    greet = ray.remote(Greet).remote()
    count = ray.remote(Count).remote()
    ray.get(count.add.remote(greet.greet.remote(source.names.remote(0, args.batch))))  # warm
    ray.get(count.reset.remote())

    started = time.perf_counter()
    in_flight: list = []
    for start in range(0, args.items, args.batch):
        names = source.names.remote(start, min(start + args.batch, args.items))
        in_flight.append(count.add.remote(greet.greet.remote(names)))
        if len(in_flight) >= args.in_flight:
            _, in_flight = ray.wait(in_flight, num_returns=1)
    total = max(ray.get(in_flight)) if in_flight else 0
    seconds = time.perf_counter() - started
    ray.shutdown()
    assert total == args.items, f"counted {total} of {args.items} items"
    print(
        json.dumps(
            {
                "bench": "ray",
                "items": args.items,
                "seconds": round(seconds, 3),
                "items_per_s": round(args.items / seconds),
                "batch": args.batch,
                "in_flight": args.in_flight,
                "ray": ray.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
