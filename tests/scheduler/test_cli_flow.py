"""The flow commands: exact output and exit status of `dagyo flow …` against a scheduler.

The scheduler here is a test double serving canned records over real gRPC
(tests/scheduler/fake_scheduler.py; the real service is tested on its own).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.commands import dagyo, free_address, run_dagyo
from tests.conftest import EXAMPLES
from tests.scheduler.fake_scheduler import (
    BOOM,
    CREATED,
    GREETINGS,
    HELLO,
    PANIC_JSON,
    PANIC_REPORT,
    STOPPED,
    TRACEBACK,
    UNREACHABLE_QUEUE,
    FakeScheduler,
    export_lines,
    lines,
    write,
)

# --- unreachable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["flow", "submit", str(EXAMPLES / "hello.json")],
        ["flow", "watch", HELLO],
        ["flow", "status", HELLO],
        ["flow", "list"],
        ["flow", "cancel", HELLO],
        ["failures"],
    ],
)
def test_an_unreachable_scheduler_is_one_line_and_exit_3(args: list[str]) -> None:
    address = free_address()
    result = dagyo(*args, address=address)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"dagyo: cannot reach the scheduler at {address}: start it with `dagyo up` or "
        "`dagyo scheduler`, or set DAGYO_SCHEDULER to its host:port\n"
    )


def test_the_console_script_says_the_same_without_a_traceback() -> None:
    address = free_address()
    done = run_dagyo("flow", "list", env={"DAGYO_SCHEDULER": address})
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [
        f"dagyo: cannot reach the scheduler at {address}: start it with `dagyo up` or "
        "`dagyo scheduler`, or set DAGYO_SCHEDULER to its host:port"
    ]


@pytest.mark.parametrize("args", [["up"], ["failures", "--follow", "--broker"]])
def test_an_unreachable_broker_is_one_line_and_exit_3(args: list[str]) -> None:
    done = run_dagyo(
        *args, env={"DAGYO_QUEUE": UNREACHABLE_QUEUE, "DAGYO_SCHEDULER": free_address()}
    )
    assert (done.returncode, done.stdout) == (3, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("dagyo: cannot reach the broker at amqp://guest:***@localhost:1/%2F")
    assert "start RabbitMQ" in line and "DAGYO_QUEUE" in line


# --- submit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_an_unreadable_flow_file_exits_2_naming_it(name: str) -> None:
    result = dagyo("flow", "submit", name)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"dagyo: {name}: cannot read the flow file: ")
    assert len(result.stderr.splitlines()) == 1


def test_submit_prints_the_flow_id_alone(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    address, fake = fake_scheduler
    path = EXAMPLES / "hello.json"
    result = dagyo("flow", "submit", str(path), "--deadline", "30", address=address)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{HELLO}\n", "")
    [request] = fake.requests
    assert request.flow_json == path.read_text()
    assert (request.source, request.deadline_s) == (str(path), 30.0)


def test_submit_of_an_invalid_flow_prints_every_problem_and_exits_2(
    fake_scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    path = write(tmp_path, {"name": "invalid"})
    result = dagyo("flow", "submit", str(path), address=fake_scheduler[0])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"dagyo: {path}: hi.nmae: no such input on progdef greet (did you mean 'name'?)\n"
        f"dagyo: {path}: out.sink: no source: connect an edge or a const\n"
    )


def test_submit_naming_a_progdef_without_executor_exits_2(
    fake_scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    result = dagyo(
        "flow", "submit", str(write(tmp_path, {"name": "unserved"})), address=fake_scheduler[0]
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "dagyo: progdef gpu_model has no executor and no autoscaler: start one\n"
    )


def test_submit_wait_streams_the_exports_in_order(
    fake_scheduler: tuple[str, FakeScheduler],
) -> None:
    result = dagyo(
        "flow", "submit", str(EXAMPLES / "hello.json"), "--wait", address=fake_scheduler[0]
    )
    assert (result.exit_code, result.stderr) == (0, f"{HELLO}\n")
    assert result.stdout == export_lines(GREETINGS)


def test_submit_wait_of_a_failing_flow_exits_1_with_the_report(
    fake_scheduler: tuple[str, FakeScheduler], tmp_path: Path
) -> None:
    result = dagyo(
        "flow",
        "submit",
        str(write(tmp_path, {"name": "boom"})),
        "--wait",
        address=fake_scheduler[0],
    )
    assert result.exit_code == 1
    assert result.stdout == export_lines(GREETINGS[:1])
    assert result.stderr == f"{BOOM}\n{PANIC_REPORT}"


# --- watch, status, list, cancel -----------------------------------------------------------------


def test_watch_prints_exports_as_run_does(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", HELLO, address=fake_scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, export_lines(GREETINGS), "")


def test_watch_of_a_failed_flow_exits_1(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", BOOM, address=fake_scheduler[0])
    assert (result.exit_code, result.stderr) == (1, PANIC_REPORT)


def test_watch_of_a_cancelled_flow_exits_1(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "watch", STOPPED, address=fake_scheduler[0])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"dagyo: flow {STOPPED} was cancelled\n"


@pytest.mark.parametrize("command", ["watch", "status", "cancel"])
def test_an_unknown_flow_id_exits_2(
    fake_scheduler: tuple[str, FakeScheduler], command: str
) -> None:
    result = dagyo("flow", command, "ffffffffffff", address=fake_scheduler[0])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "dagyo: no flow ffffffffffff: see `dagyo flow list`\n"


def when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def test_status_shows_state_nodes_and_failure(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", BOOM, address=fake_scheduler[0])
    assert (result.exit_code, result.stderr) == (1, "")
    assert result.stdout == (
        f"flow {BOOM} (boom): failed\n"
        f"created {when(CREATED + 10)}, ended {when(CREATED + 12)}\n"
        "node  progdef  version   state   executor        items received  items sent\n"
        "hi    explode  0123abcd  failed  explode-host-7  0               1\n"
        "failure (panic): node hi (progdef explode) on executor explode-host-7: "
        f"ValueError: panic-1\n{TRACEBACK}"
        "exports kept: 1\n"
    )


def test_status_of_a_succeeded_flow_exits_0(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", HELLO, address=fake_scheduler[0])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"flow {HELLO} (hello): succeeded"


def test_status_shows_each_edge_with_its_items_and_queue_depth(
    fake_scheduler: tuple[str, FakeScheduler],
) -> None:
    result = dagyo("flow", "status", HELLO, address=fake_scheduler[0])
    assert result.stdout.splitlines()[2:] == [
        "node   progdef  version   state  executor       items received  items sent",
        "names  source   0123abcd  ended  source-host-7  1               3",
        "hi     greet    0123abcd  ended  greet-host-7   3               3",
        "edge                  items sent  items received  queue depth",
        "names.src -> hi.name  3           3               0",
        "exports kept: 3",
    ]


def test_status_json_is_the_record(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", BOOM, "--json", address=fake_scheduler[0])
    assert result.exit_code == 1
    assert lines(result.stdout) == [
        {
            "id": BOOM,
            "name": "boom",
            "state": "failed",
            "created": CREATED + 10,
            "ended": CREATED + 12,
            "nodes": [
                {
                    "node": "hi",
                    "progdef": "explode",
                    "state": "failed",
                    "executor": "explode-host-7",
                    "items_sent": 1,
                    "version": "0123abcd",
                    "items_received": 0,
                    "published": 0.0,
                    "started": 0.0,
                    "ended": 0.0,
                    "errors_sent": 0,
                }
            ],
            "failure": PANIC_JSON,
            "exports": [{"export": "greetings", "value": GREETINGS[0]}],
            "exports_truncated": False,
            "exports_dropped": 0,
            "tenant": "",
            "waiting": "",
            "edges": [],
        }
    ]


def test_status_json_of_a_flow_without_failure(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "status", HELLO, "--json", address=fake_scheduler[0])
    [record] = lines(result.stdout)
    assert (result.exit_code, record["state"], record["failure"]) == (0, "succeeded", None)
    assert [n["state"] for n in record["nodes"]] == ["ended", "ended"]


def test_list_prints_one_line_per_flow(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "list", address=fake_scheduler[0])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"{HELLO}  succeeded  hello    {when(CREATED)}\n"
        f"{BOOM}  failed     boom     {when(CREATED + 10)}\n"
        f"{STOPPED}  cancelled  stopped  {when(CREATED + 20)}\n"
    )


def test_list_json(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "list", "--json", address=fake_scheduler[0])
    assert result.exit_code == 0
    assert [(r["id"], r["state"], r["name"]) for r in lines(result.stdout)] == [
        (HELLO, "succeeded", "hello"),
        (BOOM, "failed", "boom"),
        (STOPPED, "cancelled", "stopped"),
    ]


def test_cancel_prints_the_resulting_state(fake_scheduler: tuple[str, FakeScheduler]) -> None:
    result = dagyo("flow", "cancel", HELLO, address=fake_scheduler[0])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{HELLO} cancelled\n", "")
