"""Error ports: parse_int's failed items reach an export, ignore_errors, log_errors or assert,
alike embedded (``dagyo run``) and on a cluster; and the bad inputs around them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from executor.core.errors import FlowInvalid, ProgdefInvalid
from executor.core.progdef import load_catalogue
from scheduler.cli import cli
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.cluster import LocalCluster, state_of
from tests.commands import dagyo_bare
from tests.conftest import EXAMPLES, PROGDEFS
from tests.embedded import run_flow
from tests.flows import consts

NAMES = ("parse_int", "assert", "ignore_errors", "log_errors", "source", "greet", "count")
TEXTS = consts({"text": "1"}, {"text": "two"}, {"text": "3"})
BAD = "ValueError: invalid literal for int() with base 10: 'two'"


def parse(sink: dict[str, Any] | None, exports: dict[str, str], name: str) -> dict[str, Any]:
    """parse_int over TEXTS, its errors going to ``sink`` (a progdef node) or an export."""
    nodes: dict[str, Any] = {"p": {"progdef": "parse_int"}}
    edges = []
    if sink is not None:
        nodes["e"] = sink
        edges.append({"from": "p.errors", "to": "e.errors"})
    return {
        "name": name,
        "nodes": nodes,
        "edges": edges,
        "consts": [{"to": "p.text", "values": TEXTS}],
        "exports": {"values": "p.value", **exports},
    }


VALUES = [{"value": "1"}, {"value": "3"}]


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(broker_url, tmp_path_factory.mktemp("errors"), names=NAMES).start()
    yield cluster
    cluster.close()


def run_both(
    transport: str, flow: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[int, dict[str, list[Any]], str, str]:
    """Run a flow; return (exit status, exports, failure text, logs of the error node).

    memory: ``dagyo run`` as a user types it; rabbitmq: submitted to the local cluster.
    """
    if transport == "memory":
        path = tmp_path / "flow.json"
        path.write_text(json.dumps(flow))
        result = dagyo_bare("run", str(path))
        exports: dict[str, list[Any]] = {}
        for line in result.stdout.splitlines():
            value = json.loads(line)
            exports.setdefault(value["export"], []).append(value["value"])
        return result.returncode, exports, result.stderr, result.stderr
    cluster: LocalCluster = request.getfixturevalue("cluster")
    record, exports = cluster.run(flow)
    assert cluster.flow_queues(record.id) == [], "a finished flow left queues behind"
    failure = record.failure
    text = f"node {failure.node}: {failure.error}\n{failure.traceback}" if failure.node else ""
    logs = cluster.executor_log("log_errors") if "e" in flow["nodes"] else ""
    status = 0 if state_of(record) == "succeeded" else 1
    return status, exports, text, logs


TRANSPORTS = pytest.mark.parametrize("transport", ["memory", "rabbitmq"])


@TRANSPORTS
def test_errors_exported_carry_the_failed_item_as_json(
    transport: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    flow = parse(None, {"errors": "p.errors"}, "parse-export")
    status, exports, _, _ = run_both(transport, flow, tmp_path, request)
    assert status == 0
    assert exports["values"] == VALUES
    (error,) = exports["errors"]
    assert error["node"] == "p"
    assert error["progdef"] == "parse_int"
    assert error["typename"] == "dagyo.types.Text"
    assert error["item"] == {"text": "two"}  # the JSON of its typename, not base64
    assert error["error"] == BAD
    assert error["attempts"] == 1
    assert error["time"] > 0
    assert "progdefs/parse_int/main.py" in error["traceback"]
    assert "executor/_runtime/job.py" not in error["traceback"]  # the author's frames only


@TRANSPORTS
def test_ignore_errors_discards_them_and_the_flow_succeeds(
    transport: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    flow = parse({"progdef": "ignore_errors"}, {}, "parse-ignore")
    status, exports, _, _ = run_both(transport, flow, tmp_path, request)
    assert (status, exports) == (0, {"values": VALUES})


@TRANSPORTS
def test_log_errors_logs_each_as_json_at_warning(
    transport: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    flow = parse({"progdef": "log_errors"}, {}, "parse-log")
    status, exports, _, logs = run_both(transport, flow, tmp_path, request)
    assert (status, exports) == (0, {"values": VALUES})
    (line,) = [line for line in logs.splitlines() if "item error " in line]
    logged = json.loads(line.split("item error ", 1)[1])
    assert logged["node"] == "p"
    assert logged["error"] == BAD
    assert logged["item"] == {"text": "two"}
    assert logged["flow"]
    # Embedded, no logging is configured: only WARNING and above reach stderr at all.


@TRANSPORTS
def test_assert_fails_the_flow_naming_itself_the_failed_node_and_error(
    transport: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    flow = parse({"progdef": "assert"}, {}, "parse-assert")
    status, _, failure, _ = run_both(transport, flow, tmp_path, request)
    assert status == 1
    assert "node e" in failure  # the assert node
    assert 'p (parse_int) failed on item {"text": "two"}' in failure
    assert BAD in failure
    assert "progdefs/parse_int/main.py" in failure  # the failed item's traceback


def test_the_example_flow_runs(tmp_path: Path) -> None:
    result = dagyo_bare("run", str(EXAMPLES / "parse.json"))
    assert result.returncode == 0, result.stderr
    exports = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["export"] for e in exports} == {"numbers", "errors"}


# --- bad input ----------------------------------------------------------------------------


def catalogue_with(tmp_path: Path, name: str, change: Any) -> Path:
    """A catalogue of one copy of ``name`` whose progdef.json is changed by ``change``."""
    target = tmp_path / "catalogue" / name
    shutil.copytree(PROGDEFS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    data = json.loads((target / "progdef.json").read_text())
    change(data)
    (target / "progdef.json").write_text(json.dumps(data))
    return target.parent


def test_errors_naming_a_missing_port_is_refused_at_load(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "parse_int", lambda d: d.update(errors="oops"))
    with pytest.raises(ProgdefInvalid) as e:
        load_catalogue(catalogue)
    assert "progdef 'parse_int': errors 'oops' must name an output port" in str(e.value)
    assert "dagyo.types.Error" in str(e.value)


def test_errors_naming_a_port_of_another_type_is_refused_at_load(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "parse_int", lambda d: d.update(errors="value"))
    with pytest.raises(ProgdefInvalid) as e:
        load_catalogue(catalogue)
    assert "progdef 'parse_int': errors 'value' must name an output port of type" in str(e.value)
    assert "value: dagyo.types.Int64" in str(e.value)


def check(flow: dict[str, Any]) -> str:
    with pytest.raises(FlowInvalid) as e:
        check_flow(parse_flow(json.dumps(flow)), load_catalogue(PROGDEFS))
    return str(e.value)


def test_an_unconnected_error_port_is_invalid_with_the_ways_to_route_it() -> None:
    problems = check(parse(None, {}, "parse-nowhere"))
    assert "p.errors" in problems
    assert "assert" in problems and "ignore_errors" in problems and "log_errors" in problems
    assert "export" in problems


def test_an_error_port_feeding_an_input_of_another_type_is_a_type_mismatch() -> None:
    flow = parse({"progdef": "greet"}, {}, "parse-mismatch")
    flow["edges"] = [{"from": "p.errors", "to": "e.name"}]
    flow["exports"]["greetings"] = "e.greeting"
    problems = check(flow)
    assert "dagyo.types.Error" in problems and "dagyo.types.Text" in problems


def stream_progdef(tmp_path: Path, body: str, outputs: dict[str, str], **extra: Any) -> Path:
    """A catalogue of one stream progdef ``failing`` reading Text on ``items``."""
    folder = tmp_path / "catalogue" / "failing"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(body)
    progdef = {
        "name": "failing",
        "inputs": {"items": "dagyo.types.Text"},
        "outputs": outputs,
        "run": "main:run",
        **extra,
    }
    (folder / "progdef.json").write_text(json.dumps(progdef))
    return folder.parent


def run_failing(catalogue: Path, exports: dict[str, str]) -> Any:
    flow = {
        "name": "failing",
        "nodes": {"f": {"progdef": "failing"}},
        "consts": [{"to": "f.items", "values": TEXTS}],
        "exports": exports,
    }
    return run_flow(flow, catalogue=load_catalogue(catalogue))


def test_job_fail_sends_the_error_and_the_job_goes_on(tmp_path: Path) -> None:
    body = (
        "def run(job):\n"
        "    for item in job.inputs['items']:\n"
        "        if item.text == 'two':\n"
        "            job.fail(item, 'not a number')\n"
        "        else:\n"
        "            job.outputs['out'].send(item)\n"
    )
    outputs = {"out": "dagyo.types.Text", "bad": "dagyo.types.Error"}
    catalogue = stream_progdef(tmp_path, body, outputs, errors="bad")
    exports, result = run_failing(catalogue, {"out": "f.out", "bad": "f.bad"})
    assert result.state == "succeeded"
    assert exports["out"] == [{"text": "1"}, {"text": "3"}]
    assert [(e["node"], e["error"]) for e in exports["bad"]] == [("f", "not a number")]


def test_job_fail_without_an_error_port_panics_saying_so(tmp_path: Path) -> None:
    body = "def run(job):\n    for item in job.inputs['items']:\n        job.fail(item, 'no')\n"
    catalogue = stream_progdef(tmp_path, body, {})
    _, result = run_failing(catalogue, {})
    assert result.state == "failed"
    assert "job.fail needs an error port" in result.failure.error
    assert '"errors": "<port>"' in result.failure.error


@pytest.mark.parametrize("raised", ["Stopped('by hand')", "KeyboardInterrupt()"])
def test_a_handler_raising_a_stop_panics_and_sends_no_error(raised: str, tmp_path: Path) -> None:
    folder = tmp_path / "catalogue" / "failing"
    shutil.copytree(PROGDEFS / "parse_int", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "main.py").write_text(
        f"from executor.core.errors import Stopped\n\ndef handler(ctx, item):\n    raise {raised}\n"
    )
    data = json.loads((folder / "progdef.json").read_text())
    (folder / "progdef.json").write_text(json.dumps({**data, "name": "failing"}))
    flow = {
        "name": "stop",
        "nodes": {"f": {"progdef": "failing"}},
        "consts": [{"to": "f.text", "values": TEXTS}],
        "exports": {"values": "f.value", "errors": "f.errors"},
    }
    exports, result = run_flow(flow, catalogue=load_catalogue(folder.parent))
    assert result.state == "failed"
    assert result.failure.node == "f"
    assert "errors" not in exports  # a stop is never an item's Error


def test_an_item_goes_to_the_error_port_only_after_its_retries(tmp_path: Path) -> None:
    retried = {"attempts": 3, "backoff_ms": 0}
    catalogue = catalogue_with(tmp_path, "parse_int", lambda d: d.update(retries=retried))
    flow = parse(None, {"errors": "p.errors"}, "parse-retried")
    exports, result = run_flow(flow, catalogue=load_catalogue(catalogue))
    assert result.state == "succeeded"
    assert exports["values"] == VALUES
    assert [(e["error"], e["attempts"]) for e in exports["errors"]] == [(BAD, 3)]


def test_errors_null_is_no_error_port(tmp_path: Path) -> None:
    catalogue = catalogue_with(tmp_path, "greet", lambda d: d.update(errors=None))
    assert load_catalogue(catalogue)["greet"].errors == ""


def ignored() -> float:
    """Errors counted by ignore_errors in this process, over every flow."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == "dagyo_ignored_errors_total" and sample.labels["failed_node"] == "p"
    )


def test_ignore_errors_counts_what_it_discards() -> None:
    before = ignored()
    exports, result = run_flow(parse({"progdef": "ignore_errors"}, {}, "parse-counted"))
    assert (result.state, exports) == ("succeeded", {"values": VALUES})
    assert ignored() - before == 1


def test_job_fail_refuses_a_stop_as_an_item_error(tmp_path: Path) -> None:
    body = (
        "def run(job):\n"
        "    for item in job.inputs['items']:\n"
        "        job.fail(item, KeyboardInterrupt())\n"
    )
    outputs = {"bad": "dagyo.types.Error"}
    catalogue = stream_progdef(tmp_path, body, outputs, errors="bad")
    exports, result = run_failing(catalogue, {"bad": "f.bad"})
    assert result.state == "failed"
    assert "KeyboardInterrupt is a stop, not an item's failure" in result.failure.error
    assert exports == {}


def test_the_record_counts_each_nodes_errors_and_status_shows_them(cluster: LocalCluster) -> None:
    record, _ = cluster.run(parse({"progdef": "ignore_errors"}, {}, "parse-counted"))
    (p,) = [n for n in record.nodes if n.node == "p"]
    assert (p.items_sent, p.errors_sent) == (3, 1)
    assert cluster.scheduler is not None
    status = CliRunner(env={"DAGYO_SCHEDULER": cluster.scheduler.address}).invoke(
        cli, ["flow", "status", record.id]
    )
    (row,) = [line.split() for line in status.output.splitlines() if line.startswith("p ")]
    assert row[0:2] + row[-3:] == ["p", "parse_int", "3", "(1", "error)"]
