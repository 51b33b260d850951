"""The largest flow the model admits (5000 nodes, 10 000 edges): parse, check and plan.

What Submit does to a flow before anything reaches the broker, timed in one process on the
standard catalogue plus two progdefs of two and four inputs (so the edges reach their limit
with the nodes). Prints one JSON line, the best of --runs:

    {"nodes": 5000, "edges": 10000, "parse_s": …, "check_s": …, "plan_s": …, "total_s": …}

Usage:
    python bench/flow_size.py
    python bench/flow_size.py --nodes 1000 --runs 5
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from common import ROOT, emit, now

from executor.core.progdef import load_catalogue, parse_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.model import MAX_FLOW_NODES
from scheduler.flow.parse import parse_flow
from scheduler.flow.plan import plan_flow

EXTRA = (
    {"name": "merge", "inputs": {"a": "T", "b": "T"}, "outputs": {"out": "T"}},
    {"name": "gather", "inputs": {p: "T" for p in "abcd"}, "outputs": {}},
)


def flow(nodes: int) -> dict[str, Any]:
    """``nodes`` nodes and twice as many edges: a chain of merges, each also fed by one
    source whose output fans out to every merge, ending in a gather."""
    chain = nodes - 2
    edges = []
    for i in range(chain):
        edges.append({"from": f"m{i - 1}.out" if i else "names.src", "to": f"m{i}.a"})
        edges.append({"from": "names.src", "to": f"m{i}.b"})
    edges.append({"from": f"m{chain - 1}.out", "to": "all.a"})
    edges.extend({"from": "names.src", "to": f"all.{port}"} for port in "bcd")
    return {
        "name": "largest",
        "nodes": {
            "names": {"progdef": "source"},
            **{f"m{i}": {"progdef": "merge"} for i in range(chain)},
            "all": {"progdef": "gather"},
        },
        "edges": edges,
        "consts": [{"to": "names.count", "values": [3]}],
        "exports": {"last": f"m{chain - 1}.out"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=MAX_FLOW_NODES)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    catalogue = dict(load_catalogue(ROOT / "progdefs"))
    for document in EXTRA:
        progdef = parse_progdef({"run": "main:run", **document})
        catalogue[progdef.name] = progdef
    text = json.dumps(flow(args.nodes))
    best: dict[str, float] = {}
    for _ in range(args.runs):
        started = now()
        parsed = parse_flow(text, source="largest.json")
        parsed_at = now()
        checked = check_flow(parsed, catalogue, source="largest.json")
        checked_at = now()
        plan_flow(checked, flow_id="largest")
        planned_at = now()
        times = {
            "parse_s": parsed_at - started,
            "check_s": checked_at - parsed_at,
            "plan_s": planned_at - checked_at,
            "total_s": planned_at - started,
        }
        if not best or times["total_s"] < best["total_s"]:
            best = times
    figures: dict[str, Any] = {"nodes": len(parsed.nodes), "edges": len(parsed.edges)}
    emit(figures | {key: round(value, 4) for key, value in best.items()})


if __name__ == "__main__":
    main()
