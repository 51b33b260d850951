"""Progdefs on Node.js (``"runtime": "node"``) in a local cluster: the sample ``upper`` in
a flow between Python nodes, a panic in a JavaScript handler, and a drain on SIGTERM."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.pb.dagyo.v1 import failure_pb2
from tests.cluster import LocalCluster, state_of, wait_for_node
from tests.conftest import ROOT

NAMES = ("source", "upper", "count")


def mixed(count: int) -> dict:
    flow = json.loads((ROOT / "examples" / "mixed.json").read_text())
    flow["consts"] = [{"to": "names.count", "values": [{"value": count}]}]
    return flow


@pytest.fixture
def cluster(broker_url: str, tmp_path: Path, node_sdk: Path) -> Iterator[LocalCluster]:
    made = LocalCluster(broker_url, tmp_path, names=NAMES)
    yield made
    made.close()


def test_a_flow_of_python_and_node_nodes_runs_on_a_local_cluster(cluster: LocalCluster) -> None:
    record, exports = cluster.start().run(mixed(3))
    assert state_of(record) == "succeeded", record.failure.error
    assert exports["shouted"] == [{"text": f"NAME-{i}"} for i in range(3)]
    assert exports["total"] == [{"value": "3"}]


def test_a_panic_in_a_typescript_handler_fails_the_flow_with_its_stack(
    cluster: LocalCluster,
) -> None:
    code = cluster.catalogue_dir / "upper" / "main.ts"
    code.write_text(
        "type Text = { text: string };\n"
        "function shout(text: string): string {\n"
        "  throw new RangeError(`cannot shout ${text}`);\n"
        "}\n"
        "export function handler(ctx: unknown, item: Text): Text {\n"
        "  return { text: shout(item.text) };\n"
        "}\n"
    )
    record, _ = cluster.start().run(mixed(2))
    assert state_of(record) == "failed"
    failure = record.failure
    assert failure.kind == failure_pb2.FAILURE_KIND_PANIC
    assert failure.node == "shout" and failure.progdef == "upper"
    assert failure.error == "RangeError: cannot shout name-0"
    # TypeScript's own lines: the executor maps the transpiled code back to main.ts.
    assert "at shout (" in failure.traceback and "main.ts:3" in failure.traceback
    assert "at handler (" in failure.traceback
    assert "sdks/js/dist" not in failure.traceback  # the author's frames only


def test_sigterm_mid_job_drains_the_node_executor_and_exits_0(cluster: LocalCluster) -> None:
    code = cluster.catalogue_dir / "upper" / "main.ts"
    code.write_text(
        "export async function handler(ctx: unknown, item: { text: string }) {\n"
        "  await new Promise((resolve) => setTimeout(resolve, 10));\n"
        "  return { text: item.text.toUpperCase() };\n"
        "}\n"
    )
    cluster.start()
    flow_id = cluster.submit(mixed(150))
    wait_for_node(cluster, flow_id, "shout")
    executor = cluster.executors["upper"]
    executor.send_signal(signal.SIGTERM)
    assert executor.wait(timeout=60) == 0
    record = cluster.wait(flow_id)
    assert state_of(record) == "succeeded", record.failure.error
    totals = [json.loads(e.value_json) for e in record.exports if e.export == "total"]
    assert totals == [{"value": "150"}]
    assert "drained" in cluster.executor_log("upper")
