"""No credential leaks: a real scheduler with TLS and tokens, real executors with a progdef
secret, a broker user with a password of its own, and a flow that fails.

Every line any of them logs, every error message, flow record, failure report, metric
and --help text is read, and none holds the broker password, a token, the TLS key or
the progdef secret.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from tests.certificates import certificates
from tests.commands import free_port
from tests.conftest import EXAMPLES, ROOT, rabbitmqctl, vhost_of
from tests.waiting import eventually

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow

DAGYO = [sys.executable, "-c", "from scheduler.cli import main; main()"]
COMMANDS = (
    ("build",),
    ("deploy",),
    ("failures",),
    ("flow",),
    ("flow", "submit"),
    ("flow", "watch"),
    ("flow", "status"),
    ("flow", "list"),
    ("flow", "cancel"),
    ("invoke",),
    ("progdefs",),
    ("run",),
    ("scheduler",),
    ("triggers",),
    ("types",),
    ("up",),
    ("validate",),
)


def _line(log: Path, text: str, process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """The first line of a process's log holding text, waiting for it."""

    def line() -> str | None:
        found = next((line for line in log.read_text().splitlines() if text in line), None)
        assert found is not None or process.poll() is None, log.read_text()
        return found

    found = eventually(line, timeout_s, what=lambda: f"a line with {text!r} in:\n{log.read_text()}")
    assert found is not None
    return found


def _ctl(*args: str) -> None:
    # rabbitmqctl now and then fails to reach its node while other clients of it run.
    for attempt in range(3):
        try:
            rabbitmqctl(*args)
            return
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(1)


@pytest.fixture
def broker_user(broker_url: str) -> Iterator[tuple[str, str]]:
    """A broker user of the test's own with a unique password: (its URL, the password).

    Without rabbitmqctl the suite's own URL is used; its password is then checked only
    when it differs from the user name (guest:guest cannot be told apart from the user).
    """
    parts = urllib.parse.urlsplit(broker_url)
    if not shutil.which("rabbitmqctl") or parts.hostname not in ("localhost", "127.0.0.1"):
        yield broker_url, parts.password or ""
        return
    user, password = f"dagyo-hygiene-{uuid.uuid4().hex[:6]}", f"pw{uuid.uuid4().hex}"
    _ctl("add_user", user, password)
    try:
        _ctl("set_permissions", "-p", vhost_of(broker_url), user, ".*", ".*", ".*")
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
        yield urllib.parse.urlunsplit(parts._replace(netloc=netloc)), password
    finally:
        _ctl("delete_user", user)


def _catalogue(folder: Path) -> Path:
    """explode (declaring the secret API_KEY) and count."""
    for name in ("explode", "count"):
        shutil.copytree(
            ROOT / "progdefs" / name, folder / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    path = folder / "explode" / "progdef.json"
    progdef = json.loads(path.read_text())
    path.write_text(json.dumps({**progdef, "secrets": ["API_KEY"]}))
    return folder


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGYO_", "API_KEY"))}


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def test_no_credential_in_logs_errors_records_failures_metrics_or_help(
    broker_user: tuple[str, str], tmp_path: Path
) -> None:
    url, password = broker_user
    user_token, admin_token = f"tok{uuid.uuid4().hex}", f"adm{uuid.uuid4().hex}"
    progdef_secret = f"sec{uuid.uuid4().hex}"
    ca, cert, key = certificates(tmp_path)
    key_lines = [line for line in key.read_text().splitlines() if not line.startswith("-----")]
    secrets = {"token": user_token, "admin token": admin_token, "progdef secret": progdef_secret}
    secrets.update({f"TLS key line {i}": line for i, line in enumerate(key_lines)})
    username = urllib.parse.urlsplit(url).username
    if password and password != username:
        secrets["broker password"] = password
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        tokens_json(
            {
                token_digest(user_token): Principal("team-a", "user", Quotas()),
                token_digest(admin_token): Principal("ops", "admin", Quotas()),
            }
        )
    )
    catalogue = _catalogue(tmp_path / "progdefs")
    port, metrics_port = free_port(), free_port()
    shared = {**_base_env(), "PYTHONPATH": str(ROOT), "DAGYO_QUEUE": url}
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "explode", "count")}
    scheduler = subprocess.Popen(
        [*DAGYO, "scheduler", "--no-ui"],
        env={
            **shared,
            "DAGYO_SCHEDULER": f"127.0.0.1:{port}",
            "DAGYO_STATE": ":memory:",
            "DAGYO_PROGDEFS": str(catalogue),
            "DAGYO_TOKENS": str(tokens),
            "DAGYO_TLS_CERT": str(cert),
            "DAGYO_TLS_KEY": str(key),
            "DAGYO_METRICS_PORT": str(metrics_port),
        },
        cwd=tmp_path,
        stderr=logs["scheduler"].open("w"),
        text=True,
    )
    executors = {
        name: subprocess.Popen(
            [sys.executable, "-m", "executor", str(catalogue / name)],
            env={**shared, "DAGYO_METRICS_PORT": "0", "API_KEY": progdef_secret},
            cwd=tmp_path,
            stderr=logs[name].open("w"),
            text=True,
        )
        for name in ("explode", "count")
    }
    texts: dict[str, str] = {}
    client = {
        **_base_env(),
        "PYTHONPATH": str(ROOT),
        "DAGYO_SCHEDULER": f"localhost:{port}",
        "DAGYO_TLS_CA": str(ca),
    }

    def dagyo(name: str, *args: str, token: str | None = user_token) -> int:
        env = {**client, **({"DAGYO_TOKEN": token} if token else {})}
        done = subprocess.run(
            [*DAGYO, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        texts[name] = done.stdout + done.stderr
        return done.returncode

    try:
        _line(logs["scheduler"], "dagyo scheduler: gRPC on", scheduler)
        health = {}
        for name, process in executors.items():
            ready = _line(logs[name], "ready", process)
            health[name] = int(ready.rpartition("health on port ")[2].split()[0])
        failed = dagyo("submit --wait", "flow", "submit", str(EXAMPLES / "boom.json"), "--wait")
        assert failed == 1, texts["submit --wait"]
        assert "starts with 'panic'" in texts["submit --wait"], "the failure report is printed"
        assert dagyo("list", "flow", "list", "--json", token=admin_token) == 0
        (record,) = [json.loads(line) for line in texts["list"].splitlines()]
        assert dagyo("status", "flow", "status", record["id"], "--json") == 1
        assert dagyo("failures", "failures", "--json") == 0
        assert record["id"] in texts["failures"]
        assert dagyo("no token", "flow", "list", token=None) == 4
        assert dagyo("wrong token", "flow", "list", token=user_token + "x") == 4
        texts["scheduler metrics"] = _get(metrics_port, "/metrics")
        for name, health_port in health.items():
            texts[f"{name} metrics"] = _get(health_port, "/metrics")
        for command in COMMANDS:
            assert dagyo(" ".join(command) + " --help", *command, "--help") == 0
        wrong = urllib.parse.urlsplit(url)
        wrong_url = url.replace(f":{wrong.password}@", ":not-the-password@") if password else url
        refused = subprocess.run(
            [sys.executable, "-m", "executor", str(catalogue / "count")],
            env={**shared, "DAGYO_QUEUE": wrong_url, "DAGYO_METRICS_PORT": "-1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        texts["refused broker login"] = refused.stderr
        assert refused.returncode == 3, refused.stderr
        assert "not-the-password" not in refused.stderr
    finally:
        for process in [scheduler, *executors.values()]:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for name, log in logs.items():
        texts[f"{name} log"] = log.read_text()
    assert "gRPC on" in texts["scheduler log"] and "drained" in texts["explode log"]
    # The broker URL was printed, so its password would have been seen: it is redacted.
    assert ":***@" in texts["scheduler log"]
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert not leaks, leaks
