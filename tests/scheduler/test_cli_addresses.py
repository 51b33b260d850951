"""Several scheduler addresses in DAGYO_SCHEDULER (``host1:port1,host2:port2``): every command
that talks to the scheduler uses the first that answers, and exits 3 naming every address
tried when none does."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.client.api import SchedulerClient
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from scheduler.tls import ServerTls
from tests.certificates import certificates
from tests.commands import dagyo, free_address, read_until, run_dagyo
from tests.conftest import EXAMPLES, ROOT
from tests.scheduler.fake_executor import FLOW, FakeExecutor
from tests.scheduler.fake_scheduler import HELLO, FakeScheduler


@pytest.fixture
def scheduler(settings: SchedulerSettings, fake: FakeExecutor) -> Iterator[Scheduler]:
    started = Scheduler(settings)
    started.start()
    yield started
    started.stop()


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
def test_a_dead_first_address_is_passed_over_for_a_live_second(
    args: list[str], fake_scheduler: tuple[str, FakeScheduler]
) -> None:
    live, _ = fake_scheduler
    alone = dagyo(*args, address=live)
    result = dagyo(*args, address=f"{free_address()},{live}")
    assert (result.exit_code, result.stdout, result.stderr) == (
        alone.exit_code,
        alone.stdout,
        alone.stderr,
    )
    assert result.exit_code in (0, 1), result.stderr  # status of a flow that failed: 1


def test_a_real_scheduler_second_in_the_list_takes_the_flow(
    scheduler: Scheduler, tmp_path: Path
) -> None:
    dead = free_address("127.0.0.1")
    addresses = f"{dead}, {scheduler.address}"
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(FLOW))
    submitted = run_dagyo("flow", "submit", str(flow), env={"DAGYO_SCHEDULER": addresses})
    assert submitted.returncode == 0, submitted.stderr
    flow_id = submitted.stdout.strip()
    listed = run_dagyo("flow", "list", "--json", env={"DAGYO_SCHEDULER": addresses})
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [flow_id]
    with SchedulerClient(addresses) as client:
        assert client.get(flow_id).id == flow_id
        assert client.address == scheduler.address


def test_the_first_live_address_is_used_not_a_later_one(
    scheduler: Scheduler, fake_scheduler: tuple[str, FakeScheduler]
) -> None:
    fake_address, fake = fake_scheduler
    with SchedulerClient(f"{fake_address},{scheduler.address}") as client:
        assert client.get(HELLO).id == HELLO
        assert client.address == fake_address
    with SchedulerClient(f"{scheduler.address},{fake_address}") as client:
        assert client.list() == []
        assert client.address == scheduler.address


@pytest.mark.parametrize(
    "args",
    [
        ["flow", "submit", str(EXAMPLES / "hello.json")],
        ["flow", "status", HELLO],
        ["flow", "list"],
        ["flow", "cancel", HELLO],
        ["flow", "export", HELLO, "greetings"],
        ["failures"],
        ["triggers"],
        ["invoke", "greet", "--input", 'name={"text": "Ada"}'],
        ["progdefs", "--remote"],
    ],
)
def test_no_live_address_exits_3_naming_every_address_tried(args: list[str]) -> None:
    addresses = [free_address("127.0.0.1"), free_address("localhost"), free_address("127.0.0.1")]
    done = run_dagyo(*args, env={"DAGYO_SCHEDULER": ",".join(addresses)})
    assert (done.returncode, done.stdout) == (3, ""), done.stderr
    assert done.stderr.splitlines() == [
        f"dagyo: cannot reach the scheduler at {', '.join(addresses)} (none answered; each "
        "was tried in turn for up to 3 s): start one with `dagyo up` or `dagyo scheduler`, or "
        "set DAGYO_SCHEDULER to the host:port of schedulers that run (several separated by `,`)"
    ]


def test_tls_applies_to_every_address_of_the_list(
    settings: SchedulerSettings, fake: FakeExecutor, tmp_path: Path
) -> None:
    ca, cert, key = certificates(tmp_path)
    tls = ServerTls.from_env({"DAGYO_TLS_CERT": str(cert), "DAGYO_TLS_KEY": str(key)})
    scheduler = Scheduler(dataclasses.replace(settings, tls=tls))
    scheduler.start()
    try:
        live = f"localhost:{scheduler.address.rpartition(':')[2]}"
        addresses = f"{free_address()},{live}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
        trusting = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "flow", "list"],
            env={**environment, "DAGYO_SCHEDULER": addresses, "DAGYO_TLS_CA": str(ca)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert trusting.returncode == 0, trusting.stderr
        # Without the CA the TLS-only scheduler does not answer either: both are named.
        plain = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "flow", "list"],
            env={**environment, "DAGYO_SCHEDULER": addresses},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert plain.returncode == 3, plain.stderr
        (line,) = plain.stderr.splitlines()
        assert f"cannot reach the scheduler at {addresses.replace(',', ', ')} (" in line
    finally:
        scheduler.stop()


def test_dagyo_scheduler_listens_on_the_first_address_of_the_list(broker_url: str) -> None:
    first, second = free_address("127.0.0.1"), free_address("127.0.0.1")
    addresses = f"{first},{second}"
    env = {
        **os.environ,
        "DAGYO_QUEUE": broker_url,
        "DAGYO_METRICS_PORT": "0",
        "DAGYO_UI": "off",
        "DAGYO_SCHEDULER": addresses,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "scheduler", "--state", ":memory:"],
        cwd=ROOT,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
    )
    try:
        started = read_until(process, "dagyo scheduler: gRPC on", timeout_s=60)
        assert started.startswith(f"dagyo scheduler: gRPC on {first}, "), started
        listed = run_dagyo("flow", "list", env={"DAGYO_SCHEDULER": addresses})
        assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
