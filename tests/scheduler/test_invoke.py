"""`dagyo invoke PROGDEF --input PORT=JSON`: one progdef run like a function.

Embedded with --local, and through the scheduler and real executors on the real broker.
The gRPC Invoke is played against the fake executor where a test must hold a job running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.core.errors import FlowInvalid
from executor.core.progdef import load_catalogue
from scheduler.client.api import SchedulerClient
from scheduler.flow.invoke import invocation_flow
from tests.cluster import LocalCluster
from tests.commands import run_dagyo
from tests.conftest import PROGDEFS
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import TICK

CATALOGUE = load_catalogue(PROGDEFS)
ADA = '{"text": "Ada"}'
TICK_CODE = """
from executor.core.types import Int64


def run(job):
    for n in range(3):
        job.outputs["ticks"].send(Int64(value=n))
"""


def lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


# --- the one-node flow -----------------------------------------------------------------------


def test_the_flow_has_one_node_its_inputs_as_consts_and_every_output_exported() -> None:
    flow = json.loads(invocation_flow("greet", ["name=" + ADA, 'name=["Bob", "Cy"]'], CATALOGUE))
    assert flow["nodes"] == {"greet": {"progdef": "greet"}}
    assert flow["edges"] == []
    assert flow["consts"] == [{"to": "greet.name", "values": [{"text": "Ada"}, "Bob", "Cy"]}]
    assert flow["exports"] == {"greeting": "greet.greeting"}


@pytest.mark.parametrize(
    ("progdef", "inputs", "message"),
    [
        (
            "gret",
            ["name=" + ADA],
            "no progdef named 'gret' in the catalogue (did you mean 'greet'?)",
        ),
        ("greet", ["nmae=" + ADA], "--input nmae: no such input on progdef greet (did you mean "),
        ("greet", [ADA], "write PORT=JSON, e.g. --input name="),
        ("greet", ["name=Ada"], "malformed JSON"),
        ("greet", [], "greet.name: no items for this input: give them with --input name=JSON"),
    ],
)
def test_a_bad_invocation_names_the_progdef_or_port(
    progdef: str, inputs: list[str], message: str
) -> None:
    with pytest.raises(FlowInvalid) as raised:
        invocation_flow(progdef, inputs, CATALOGUE)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


# --- embedded ---------------------------------------------------------------------------------


def test_local_invoke_prints_each_output_item() -> None:
    done = run_dagyo("invoke", "greet", "--input", "name=" + ADA, "--local")
    assert (done.returncode, done.stdout) == (
        0,
        '{"output": "greeting", "value": {"text": "hello Ada"}}\n',
    ), done.stderr


def test_local_invoke_checks_types_and_ports() -> None:
    wrong = run_dagyo("invoke", "greet", "--input", 'name={"value": 3}', "--local")
    assert wrong.returncode == 2 and "is not the JSON form of dagyo.types.Text" in wrong.stderr
    unknown = run_dagyo("invoke", "greet", "--input", "nmae=" + ADA, "--local")
    assert unknown.returncode == 2 and "(did you mean 'name'?)" in unknown.stderr
    assert "Traceback" not in wrong.stderr + unknown.stderr


def test_local_invoke_of_a_panicking_progdef_exits_1_with_the_failure() -> None:
    done = run_dagyo("invoke", "explode", "--input", 'items=["ok", "panic now"]', "--local")
    assert done.returncode == 1
    # A panic stops the flow: items sent before it may or may not have been delivered.
    assert lines(done.stdout) in ([], [{"output": "items", "value": {"text": "ok"}}])
    assert "explode" in done.stderr and "panic now" in done.stderr


def test_local_invoke_of_progdefs_without_inputs_or_without_outputs(tmp_path: Path) -> None:
    catalogue = tmp_path / "progdefs"
    write_progdef(catalogue / "tick", TICK, "1")
    (catalogue / "tick" / "main.py").write_text(TICK_CODE)
    no_inputs = run_dagyo("invoke", "tick", "--local", "--progdefs", str(catalogue))
    assert lines(no_inputs.stdout) == [
        {"output": "ticks", "value": {"value": str(n)}} for n in range(3)
    ], no_inputs.stderr
    no_outputs = run_dagyo("invoke", "ignore_errors", "--input", 'errors={"error": "x"}', "--local")
    assert (no_outputs.returncode, no_outputs.stdout) == (0, ""), no_outputs.stderr


# --- through the scheduler and real executors -----------------------------------------------


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = LocalCluster(
        broker_url,
        tmp_path_factory.mktemp("invoke"),
        names=("greet", "explode", "ignore_errors"),
    ).start()
    yield started
    started.close()


def on(cluster: LocalCluster) -> dict[str, str]:
    assert cluster.scheduler is not None
    return {"DAGYO_SCHEDULER": cluster.scheduler.address}


def test_invoke_greet_through_the_scheduler(cluster: LocalCluster) -> None:
    done = run_dagyo("invoke", "greet", "--input", "name=" + ADA, env=on(cluster))
    assert (done.returncode, done.stdout) == (
        0,
        '{"output": "greeting", "value": {"text": "hello Ada"}}\n',
    ), done.stderr
    flow_id = done.stderr.split()[-1]
    assert cluster.flow_queues(flow_id) == []


@pytest.mark.slow
def test_invoke_through_the_scheduler_fails_refuses_and_runs_without_outputs(
    cluster: LocalCluster,
) -> None:
    failed = run_dagyo("invoke", "explode", "--input", 'items="panic-1"', env=on(cluster))
    assert failed.returncode == 1 and "panic-1" in failed.stderr
    refused = run_dagyo("invoke", "greet", "--input", "nmae=" + ADA, env=on(cluster))
    assert refused.returncode == 2 and "(did you mean 'name'?)" in refused.stderr
    wrong = run_dagyo("invoke", "greet", "--input", "name=3", env=on(cluster))
    assert wrong.returncode == 2 and "is not the JSON form of dagyo.types.Text" in wrong.stderr
    silent = run_dagyo(
        "invoke", "ignore_errors", "--input", 'errors={"error": "x"}', env=on(cluster)
    )
    assert (silent.returncode, silent.stdout) == (0, ""), silent.stderr


def test_the_grpc_invoke_streams_the_flow_id_the_outputs_and_the_end(
    cluster: LocalCluster,
) -> None:
    assert cluster.scheduler is not None
    with SchedulerClient(cluster.scheduler.address) as client:
        events = list(client.invoke("greet", ['name=["Ada", "Bob"]']))
    kinds = [event.WhichOneof("kind") for event in events]
    assert kinds == ["flow_id", "output", "output", "end"]
    assert [json.loads(e.output.value_json) for e in events[1:3]] == [
        {"text": "hello Ada"},
        {"text": "hello Bob"},
    ]
    assert {e.output.export for e in events[1:3]} == {"greeting"}
    assert events[-1].end.id == events[0].flow_id
