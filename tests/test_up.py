"""`dagyo up` end to end: a real scheduler and executors, a flow submitted, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import copy_catalogue
from tests.commands import dagyo_up, exported_texts, free_address
from tests.conftest import EXAMPLES, ROOT
from tests.listening import listening_addresses

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow


def test_up_runs_the_catalogue_serves_a_flow_and_stops_cleanly_on_ctrl_c(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    address = free_address("127.0.0.1")
    env = {
        **os.environ,
        "DAGYO_QUEUE": broker_url,
        "DAGYO_STATE": str(tmp_path / "s.db"),
        "DAGYO_SCHEDULER": address,
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DAGYO_PROGDEFS", None)
    with dagyo_up("--progdefs", str(catalogue), "--listen", address, env=env) as up:
        hello = exported_texts(EXAMPLES / "hello.json", env)
        assert hello == [f"hello name-{i}" for i in range(3)]
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    leftover = subprocess.run(
        ["pgrep", "-f", f"executor {catalogue}"], capture_output=True, text=True
    )
    assert leftover.stdout == "", "an executor outlived `dagyo up`"


def test_up_listens_on_loopback_only(broker_url: str, tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("greet",))
    address = free_address("127.0.0.1")
    unset = ("DAGYO_PROGDEFS", "DAGYO_METRICS_ADDR", "DAGYO_METRICS_PORT", "DAGYO_UI")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(DAGYO_QUEUE=broker_url, DAGYO_STATE=":memory:", PYTHONPATH=str(ROOT))
    with dagyo_up("--progdefs", str(catalogue), "--listen", address, env=env) as up:
        listening = listening_addresses(up.pid)
        # gRPC, the dashboard, the scheduler's metrics and the executor's health at least.
        assert len(listening) >= 4, listening
        assert {host for host, _ in listening} == {"127.0.0.1"}, listening
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0


def test_up_passes_tls_and_tokens_to_its_scheduler_and_not_to_executors(
    broker_url: str, tmp_path: Path
) -> None:
    from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
    from tests.certificates import certificates
    from tests.listening import process_tree

    catalogue = copy_catalogue(tmp_path / "progdefs", ("greet",))
    ca, cert, key = certificates(tmp_path)
    tokens = tmp_path / "tokens.json"
    principal = Principal("team-a", "user", Quotas())
    tokens.write_text(tokens_json({token_digest("a-token"): principal}))
    port = free_address("127.0.0.1").rpartition(":")[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    env.update(DAGYO_QUEUE=broker_url, DAGYO_STATE=":memory:", PYTHONPATH=str(ROOT))
    env.update(DAGYO_UI="off", DAGYO_TOKENS=str(tokens), DAGYO_TOKEN="a-token")
    env.update(DAGYO_TLS_CERT=str(cert), DAGYO_TLS_KEY=str(key))
    dagyo = [sys.executable, "-c", "from scheduler.cli import main; main()"]
    listen = f"127.0.0.1:{port}"
    with dagyo_up("--progdefs", str(catalogue), "--listen", listen, env=env) as up:
        client = {k: v for k, v in env.items() if not k.startswith("DAGYO_")}
        client.update(DAGYO_SCHEDULER=f"localhost:{port}", DAGYO_TLS_CA=str(ca))
        calls = {
            token: subprocess.run(
                [*dagyo, "flow", "list"],
                env={**client, **({"DAGYO_TOKEN": token} if token else {})},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for token in ("", "a-token")
        }
        assert calls[""].returncode == 4, calls[""].stderr
        assert calls["a-token"].returncode == 0, calls["a-token"].stderr
        executors = [pid for pid in process_tree(up.pid) if pid != up.pid]
        assert executors
        for pid in executors:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            names = {entry.partition(b"=")[0].decode() for entry in environ if entry}
            withheld = {"DAGYO_TOKENS", "DAGYO_TLS_CERT", "DAGYO_TLS_KEY", "DAGYO_TOKEN"}
            assert not names & withheld, names
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
