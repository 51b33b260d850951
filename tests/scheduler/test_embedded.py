"""The embedded runner: what only it shows (its settings, its bounded streams).

The flows every transport must run alike are in tests/flows.py and run, on the memory
transport too, in tests/test_transports.py.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from executor._runtime.stream import StreamSettings
from scheduler.embedded import EmbeddedRunner, RunResult
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.embedded import CATALOGUE, run_flow, source
from tests.flows import CASES, same_exports


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


def fan_out(width: int, *, sink: str = "void_sink", port: str = "sink") -> dict[str, Any]:
    nodes: dict[str, Any] = {"names": {"progdef": "source"}}
    nodes.update({f"s{i}": {"progdef": sink} for i in range(width)})
    return {
        "name": "wide",
        "nodes": nodes,
        "edges": [{"from": "names.src", "to": f"s{i}.{port}"} for i in range(width)],
        "consts": [{"to": "names.count", **source(5)}],
    }


def test_a_fan_out_into_three_thousand_sinks_runs_every_job_to_its_end() -> None:
    # Idle readers sleep until a frame or a stop wakes them: 3000 of them once woke 30 000
    # times a second between them and the flow did not end.
    exports, result = run_flow(fan_out(3000))
    assert result.state == "succeeded", result.failure
    assert result.items_sent["names.src"] == 5


def test_a_panic_in_a_wide_fan_out_stops_every_idle_reader_at_once() -> None:
    # The sinks wait on a slow relay (a minute per item) when the panic stops the flow.
    flow = fan_out(500)
    flow["nodes"]["relay"] = {"progdef": "slow"}
    for edge in flow["edges"]:
        edge["from"] = "relay.items"
    flow["edges"].append({"from": "names.src", "to": "relay.items"})
    flow["nodes"]["boom"] = {"progdef": "explode"}
    flow["consts"] += [
        {"to": "relay.delay_ms", "values": [60_000]},
        {"to": "boom.items", "values": ["panic-now"]},
    ]
    flow["exports"] = {"out": "boom.items"}
    done = threading.Event()
    outcome: list[RunResult] = []

    def run() -> None:
        outcome.append(run_flow(flow)[1])
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), "the readers did not stop after the panic"
    assert outcome[0].state == "failed"
    assert outcome[0].failure is not None and outcome[0].failure.node == "boom"
