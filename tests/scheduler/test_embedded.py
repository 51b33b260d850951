"""The embedded runner: what only it shows (its settings, its bounded streams).

The flows every transport must run alike are in tests/flows.py and run, on the memory
transport too, in tests/test_transports.py.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any

from google.protobuf import json_format

from executor.progdef import load_catalogue
from executor.stream import StreamSettings
from scheduler.embedded import EmbeddedRunner, RunResult
from scheduler.flow.check import check_flow
from scheduler.flow.model import parse_flow
from tests.conftest import PROGDEFS
from tests.flows import CASES, same_exports

CATALOGUE = load_catalogue(PROGDEFS)


def run_flow(
    flow: dict[str, Any], *, catalogue: Any = None, settings: StreamSettings | None = None
) -> tuple[dict[str, list[Any]], RunResult]:
    checked = check_flow(parse_flow(json.dumps(flow)), catalogue or CATALOGUE)
    exports: dict[str, list[Any]] = defaultdict(list)

    def on_export(name: str, message: Any) -> None:
        exports[name].append(json_format.MessageToDict(message))

    result = EmbeddedRunner(checked, on_export=on_export, settings=settings).run()
    return dict(exports), result


def source(count: int | list[int]) -> dict[str, Any]:
    counts = count if isinstance(count, list) else [count]
    return {"values": [{"value": c} for c in counts]}


def test_fan_out_holds_with_tiny_frames_and_streams() -> None:
    """The fan-out case of tests/flows.py, with one consumer often full and others not."""
    (case,) = [c for c in CASES if c.id == "fan-out"]
    exports, result = run_flow(case.flow, settings=StreamSettings(frame_max_items=7, max_frames=2))
    assert result.state == "succeeded"
    assert same_exports(case, exports)


def test_unordered_cartesian_product_panics_past_its_buffer_cap() -> None:
    exports, result = run_flow(
        {
            "name": "too-big",
            "nodes": {
                "a": {"progdef": "source"},
                "b": {"progdef": "source"},
                "p": {"progdef": "unordered_cartesian_product"},
                "v": {"progdef": "void_sink"},
            },
            "edges": [
                {"from": "a.src", "to": "p.a"},
                {"from": "b.src", "to": "p.b"},
                {"from": "p.pairs", "to": "v.sink"},
            ],
            "consts": [{"to": "a.count", **source(200_000)}, {"to": "b.count", **source(0)}],
        }
    )
    assert result.state == "failed"
    assert result.failure is not None
    assert (result.failure.node, result.failure.progdef) == ("p", "unordered_cartesian_product")
    assert "10 MB" in result.failure.error


def test_a_bounded_stream_holds_at_most_its_bound_while_a_slow_consumer_lags() -> None:
    flow = {
        "name": "backpressure",
        "nodes": {"s": {"progdef": "source"}, "w": {"progdef": "slow"}},
        "edges": [{"from": "s.src", "to": "w.items"}],
        "consts": [{"to": "s.count", **source(60)}, {"to": "w.delay_ms", **source(5)}],
        "exports": {"names": "w.items"},
    }
    checked = check_flow(parse_flow(json.dumps(flow)), CATALOGUE)
    received: list[Any] = []
    runner = EmbeddedRunner(
        checked,
        on_export=lambda _, m: received.append(m.text),
        settings=StreamSettings(frame_max_items=1, max_frames=3),
    )
    queue = runner.plan.jobs[1].descriptor.inputs["items"].queue
    depths: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            depths.append(runner.transport.depth(queue))
            done.wait(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = runner.run()
    done.set()
    sampler.join()
    assert result.state == "succeeded"
    assert received == [f"name-{i}" for i in range(60)]
    assert max(depths) <= 3
    assert max(depths) == 3, "the producer should have filled the stream and waited"
    assert runner.progress()["s.src"] == 60
