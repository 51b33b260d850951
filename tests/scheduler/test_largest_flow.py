"""The largest flow the model admits checks and plans in well under a second.

A flow may have MAX_FLOW_NODES nodes and MAX_FLOW_EDGES edges, and Submit checks and plans
it on the scheduler: a quadratic step (every edge scanned for every port) took 15-25 s
there. The deadline is generous, so only that case fails; bench/flow_size.py prints the
real figure.
"""

from __future__ import annotations

import json
import time
from typing import Any

from scheduler.flow.check import check_flow
from scheduler.flow.model import MAX_FLOW_EDGES, MAX_FLOW_NODES
from scheduler.flow.parse import parse_flow
from scheduler.flow.plan import plan_flow
from tests.scheduler.checking import with_progdefs

# Two inputs per node on average, so the edges reach their limit with the nodes.
CATALOGUE = with_progdefs(
    {"name": "merge", "inputs": {"a": "T", "b": "T"}, "outputs": {"out": "T"}},
    {"name": "gather", "inputs": {p: "T" for p in "abcd"}, "outputs": {}},
)
DEADLINE_S = 10.0


def largest_flow() -> dict[str, Any]:
    """MAX_FLOW_NODES nodes and MAX_FLOW_EDGES edges: a chain of merges, each also fed by
    one source whose output fans out to every merge, ending in a gather."""
    chain = MAX_FLOW_NODES - 2
    nodes: dict[str, Any] = {"names": {"progdef": "source"}}
    nodes.update({f"m{i}": {"progdef": "merge"} for i in range(chain)})
    nodes["all"] = {"progdef": "gather"}
    edges = []
    for i in range(chain):
        edges.append({"from": f"m{i - 1}.out" if i else "names.src", "to": f"m{i}.a"})
        edges.append({"from": "names.src", "to": f"m{i}.b"})
    edges.append({"from": f"m{chain - 1}.out", "to": "all.a"})
    edges.extend({"from": "names.src", "to": f"all.{port}"} for port in "bcd")
    return {
        "name": "largest",
        "nodes": nodes,
        "edges": edges,
        "consts": [{"to": "names.count", "values": [3]}],
        "exports": {"last": f"m{chain - 1}.out"},
    }


def test_the_largest_admitted_flow_checks_and_plans_within_the_deadline() -> None:
    text = json.dumps(largest_flow())
    started = time.monotonic()

    checked = check_flow(parse_flow(text, source="largest.json"), CATALOGUE)
    plan = plan_flow(checked, flow_id="largest")

    elapsed = time.monotonic() - started
    assert (len(checked.flow.nodes), len(checked.flow.edges)) == (MAX_FLOW_NODES, MAX_FLOW_EDGES)
    assert elapsed < DEADLINE_S, f"checking and planning took {elapsed:.1f} s"
    assert len(plan.jobs) == MAX_FLOW_NODES
    assert len(plan.stream_queues) == MAX_FLOW_EDGES
    jobs = {job.descriptor.node: job.descriptor for job in plan.jobs}
    assert [job.descriptor.node for job in plan.jobs][:3] == ["names", "m0", "m1"]
    # The source's one output feeds every merge and the gather: one queue per edge.
    assert len(jobs["names"].outputs["src"].queues) == MAX_FLOW_NODES - 2 + 4
    assert jobs["m1"].inputs["a"].edge == "m0.out"
    assert jobs["m1"].outputs["out"].queues == [jobs["m2"].inputs["a"].queue]
    last = jobs[f"m{MAX_FLOW_NODES - 3}"].outputs["out"]
    assert list(last.queues) == [jobs["all"].inputs["a"].queue, plan.export_queues["last"]]
    assert plan.export_types == {"last": "dagyo.types.Text"}
