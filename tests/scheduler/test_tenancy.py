"""Tokens, tenants, quotas and TLS on a real scheduler and RabbitMQ.

Two tenants share one scheduler: each sees only its own flows (another tenant's flow id
answers like one that does not exist), an admin sees both, quotas hold, a revoked token is
refused once the file changes, and TLS refuses plain-text and untrusting clients.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor.core.errors import SchedulerRefused, SchedulerUnauthenticated, SchedulerUnavailable
from scheduler.client.api import SchedulerClient
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from scheduler.tls import ServerTls
from tests.certificates import certificates
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import EMIT, FLOW, RELAY, FakeExecutor, run_to_success

TOKENS = {
    "alice": Principal("team-a", "user", Quotas(max_running_flows=3, max_nodes=5)),
    "bob": Principal("team-b", "user", Quotas(max_deadline_s=60, default_deadline_s=30)),
    "root": Principal("ops", "admin", Quotas()),
    "carol": Principal("team-c", "user", Quotas(max_export_items=2)),
}


def write_tokens(path: Path, tokens: dict[str, Principal]) -> None:
    path.write_text(tokens_json({token_digest(t): p for t, p in tokens.items()}))
    stat = path.stat()  # a rewrite within one clock tick must still look changed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """emit and relay, and ``private``: a relay only team-a may use."""
    folder = tmp_path / "progdefs"
    version = uuid.uuid4().hex[:16]
    write_progdef(folder / "emit", EMIT, version)
    write_progdef(folder / "relay", RELAY, version)
    write_progdef(folder / "private", {**RELAY, "name": "private", "tenants": ["team-a"]}, version)
    return folder


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    write_tokens(path, TOKENS)
    return path


@pytest.fixture
def scheduler(settings: SchedulerSettings, tokens: Path, fake: FakeExecutor) -> Iterator[Scheduler]:
    started = Scheduler(dataclasses.replace(settings, tokens_path=str(tokens)))
    started.start()
    yield started
    started.stop()


def client(scheduler: Scheduler, token: str) -> SchedulerClient:
    return SchedulerClient(scheduler.address, token=token, call_timeout_s=20)


def dagyo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_call_without_a_valid_token_is_refused_and_the_cli_exits_4(
    scheduler: Scheduler,
) -> None:
    with (
        SchedulerClient(scheduler.address, token=None) as anonymous,
        pytest.raises(SchedulerUnauthenticated, match="set DAGYO_TOKEN"),
    ):
        anonymous.list()
    with client(scheduler, "mallory") as mallory, pytest.raises(SchedulerUnauthenticated):
        mallory.submit(json.dumps(FLOW))
    result = dagyo("flow", "list", env={"DAGYO_SCHEDULER": scheduler.address})
    assert result.returncode == 4, result.stderr
    assert "set DAGYO_TOKEN" in result.stderr and "Traceback" not in result.stderr
    result = dagyo(
        "flow", "list", env={"DAGYO_SCHEDULER": scheduler.address, "DAGYO_TOKEN": "alice"}
    )
    assert result.returncode == 0, result.stderr
    # health checking needs no token: Kubernetes probes carry none
    with grpc.insecure_channel(scheduler.address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_user_sees_only_its_tenants_flows(scheduler: Scheduler) -> None:
    with client(scheduler, "alice") as alice, client(scheduler, "bob") as bob:
        mine = alice.submit(json.dumps(FLOW))
        theirs = bob.submit(json.dumps(FLOW))
        assert [r.id for r in alice.list()] == [mine]
        assert alice.get(mine).tenant == "team-a"
        for reach in (bob.get, bob.cancel, bob.failures, lambda i: list(bob.watch(i))):
            with pytest.raises(SchedulerRefused) as caught:
                reach(mine)
            assert caught.value.code == "NOT_FOUND"
            nowhere = _refusal(alice, "0123456789ab")
            assert str(caught.value) == nowhere.replace("0123456789ab", mine)
        assert [r.id for r in bob.list()] == [theirs]
    with client(scheduler, "root") as root:
        assert {(r.id, r.tenant) for r in root.list()} == {(mine, "team-a"), (theirs, "team-b")}
        assert root.cancel(mine).id == mine
    result = dagyo(
        "flow", "status", mine, env={"DAGYO_SCHEDULER": scheduler.address, "DAGYO_TOKEN": "bob"}
    )
    assert result.returncode == 2 and mine in result.stderr and "no flow" in result.stderr


def test_flow_list_shows_the_tenant_column_to_admins_only(scheduler: Scheduler) -> None:
    with client(scheduler, "alice") as alice, client(scheduler, "bob") as bob:
        mine, theirs = alice.submit(json.dumps(FLOW)), bob.submit(json.dumps(FLOW))
    env = {"DAGYO_SCHEDULER": scheduler.address}
    admin = dagyo("flow", "list", env={**env, "DAGYO_TOKEN": "root"})
    assert admin.returncode == 0, admin.stderr
    rows = {line.split()[0]: line.split() for line in admin.stdout.splitlines()}
    assert (rows[mine][2], rows[theirs][2]) == ("team-a", "team-b"), admin.stdout
    user = dagyo("flow", "list", env={**env, "DAGYO_TOKEN": "alice"})
    assert user.returncode == 0, user.stderr
    (line,) = user.stdout.splitlines()
    assert line.split()[0] == mine and "team-a" not in line


def _refusal(who: SchedulerClient, flow_id: str) -> str:
    """The answer for an id that exists nowhere, with the id replaced: the same words."""
    try:
        who.get(flow_id)
    except SchedulerRefused as e:
        return str(e)
    raise AssertionError("an unknown id was found")


def test_quotas_name_the_quota_its_limit_and_the_value(scheduler: Scheduler) -> None:
    extra = [f"n{i}" for i in range(5)]
    big = {
        **FLOW,
        "nodes": {**FLOW["nodes"], **{n: {"progdef": "emit"} for n in extra}},
        "consts": [*FLOW["consts"], *({"to": f"{n}.n", "values": [{"value": 1}]} for n in extra)],
        "exports": {**FLOW["exports"], **{n: f"{n}.items" for n in extra}},
    }
    with client(scheduler, "alice") as alice:
        with pytest.raises(SchedulerRefused, match="quota max_nodes is 5 .* 7 nodes") as caught:
            alice.submit(json.dumps(big))
        assert caught.value.code == "RESOURCE_EXHAUSTED"
        for _ in range(3):
            alice.submit(json.dumps(FLOW))
        with pytest.raises(SchedulerRefused, match="quota max_running_flows is 3"):
            alice.submit(json.dumps(FLOW))
    with client(scheduler, "bob") as bob:
        with pytest.raises(SchedulerRefused, match="quota max_deadline_s is 60 .* 61 s"):
            bob.submit(json.dumps(FLOW), deadline_s=61)
        bob.submit(json.dumps(FLOW), deadline_s=60)


def test_a_flow_submitted_without_a_deadline_gets_the_tokens_default(
    scheduler: Scheduler, fake: FakeExecutor
) -> None:
    with client(scheduler, "bob") as bob:
        before = time.time()
        flow_id = bob.submit(json.dumps(FLOW))  # bob's default_deadline_s is 30
        jobs = fake.next_jobs(2)
    assert {job.flow_id for job in jobs.values()} == {flow_id}
    for job in jobs.values():
        assert before + 30 <= job.deadline <= time.time() + 30


def test_export_items_kept_stop_at_the_quota(scheduler: Scheduler, fake: FakeExecutor) -> None:
    with client(scheduler, "carol") as carol:
        flow_id = carol.submit(json.dumps(FLOW))
        run_to_success(fake, fake.next_jobs(2))
        list(carol.watch(flow_id))  # to its end
        record = carol.get(flow_id)
    assert [json.loads(e.value_json) for e in record.exports] == [{"text": "x0"}, {"text": "x1"}]
    assert record.exports_truncated


def test_a_progdef_limited_to_a_tenant_does_not_exist_for_another(scheduler: Scheduler) -> None:
    flow = {**FLOW, "nodes": {"a": {"progdef": "emit"}, "b": {"progdef": "private"}}}
    with client(scheduler, "alice") as alice:
        assert alice.submit(json.dumps(flow))
    with client(scheduler, "bob") as bob, pytest.raises(SchedulerRefused) as caught:
        bob.submit(json.dumps(flow))
    assert "no progdef named 'private' in the catalogue" in str(caught.value)


def test_a_revoked_token_is_refused_without_a_restart(scheduler: Scheduler, tokens: Path) -> None:
    with client(scheduler, "alice") as alice:
        alice.list()
        write_tokens(tokens, {k: v for k, v in TOKENS.items() if k != "alice"})
        with pytest.raises(SchedulerUnauthenticated, match="unknown or revoked"):
            alice.list()


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_serves_trusting_clients_only(
    settings: SchedulerSettings, fake: FakeExecutor, tmp_path: Path
) -> None:
    ca, cert, key = certificates(tmp_path)
    tls = ServerTls.from_env({"DAGYO_TLS_CERT": str(cert), "DAGYO_TLS_KEY": str(key)})
    scheduler = Scheduler(dataclasses.replace(settings, tls=tls))
    scheduler.start()
    try:
        port = scheduler.address.rpartition(":")[2]
        address = f"localhost:{port}"
        trusting = dagyo("flow", "list", env={"DAGYO_SCHEDULER": address, "DAGYO_TLS_CA": str(ca)})
        assert trusting.returncode == 0, trusting.stderr
        plain = dagyo("flow", "list", env={"DAGYO_SCHEDULER": address})
        assert plain.returncode == 3, plain.stderr
        (line,) = plain.stderr.splitlines()
        assert address in line and "if it serves TLS, set DAGYO_TLS_CA" in line
        (tmp_path / "other").mkdir()
        other_ca, _, _ = certificates(tmp_path / "other")
        untrusting_cli = dagyo(
            "flow", "list", env={"DAGYO_SCHEDULER": address, "DAGYO_TLS_CA": str(other_ca)}
        )
        assert untrusting_cli.returncode == 3, untrusting_cli.stderr
        (line,) = untrusting_cli.stderr.splitlines()  # nothing of gRPC's own log
        assert address in line
        assert "its certificate is not signed by a CA this client trusts" in line
        assert "set DAGYO_TLS_CA to the CA that signed it" in line
        by_address = f"127.0.0.1:{port}"  # the certificate names localhost only
        wrong_name = dagyo(
            "flow", "list", env={"DAGYO_SCHEDULER": by_address, "DAGYO_TLS_CA": str(ca)}
        )
        assert wrong_name.returncode == 3, wrong_name.stderr
        (line,) = wrong_name.stderr.splitlines()
        assert "its certificate does not name 127.0.0.1" in line
        with (
            SchedulerClient(f"https://{address}", call_timeout_s=5) as untrusting,
            pytest.raises(SchedulerUnavailable),
        ):
            untrusting.list()
    finally:
        scheduler.stop()


def test_failures_follow_goes_through_the_scheduler_and_sees_its_tenant_only(
    scheduler: Scheduler, fake: FakeExecutor
) -> None:
    env = {"DAGYO_SCHEDULER": scheduler.address}
    command = [sys.executable, "-m", "scheduler.cli", "failures", "--follow", "--json"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    followers = {
        who: subprocess.Popen(
            command,
            env={**base, **env, "DAGYO_TOKEN": who},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("alice", "bob")
    }
    try:
        with client(scheduler, "alice") as alice:
            flow_id = alice.submit(json.dumps(FLOW))
            jobs = fake.next_jobs(2)
            fake.start_job(jobs["a"])
            fake.panic(jobs["a"], "ValueError: only for alice", "Traceback …")
            line = followers["alice"].stdout.readline()  # type: ignore[union-attr]
        report = json.loads(line)
        assert (report["flow_id"], report["error"]) == (flow_id, "ValueError: only for alice")
        # Bob's follower shows what it sees in order: its first line is bob's own failure.
        with client(scheduler, "bob") as bob:
            bobs = bob.submit(json.dumps(FLOW))
            jobs = fake.next_jobs(2)
            fake.start_job(jobs["a"])
            fake.panic(jobs["a"], "ValueError: only for bob", "Traceback …")
            line = followers["bob"].stdout.readline()  # type: ignore[union-attr]
        report = json.loads(line)
        assert (report["flow_id"], report["error"]) == (bobs, "ValueError: only for bob")
    finally:
        for follower in followers.values():
            follower.send_signal(signal.SIGINT)
        outputs = {who: f.communicate(timeout=20) for who, f in followers.items()}
    assert outputs["bob"][0] == ""
    assert followers["alice"].returncode == 0 and followers["bob"].returncode == 0
