"""The scheduler's settings, its metrics endpoint and ``serve``.

The fixtures are in conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from executor.core.constants import QueueType
from executor.core.errors import DagyoError
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.config import SchedulerSettings, default_state_path
from scheduler.service.metrics import MetricsServer, SchedulerMetrics
from scheduler.service.server import serve
from tests.commands import free_port
from tests.conftest import ROOT
from tests.scheduler.fake_executor import WAIT_S, Client, end_of


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "DAGYO_QUEUE": "amqp://u:p@rabbit:5672/%2F",
        "DAGYO_SCHEDULER": "0.0.0.0:6000",
        "DAGYO_STATE": ":memory:",
        "DAGYO_PROGDEFS": str(tmp_path),
        "DAGYO_HEARTBEAT_TIMEOUT_S": "2.5",
        "DAGYO_EXPORT_CAP_BYTES": "1000",
        "DAGYO_METRICS_PORT": "0",
        "DAGYO_REQUIRE_CONSUMERS": "no",
        "DAGYO_UI": "127.0.0.1:0",
        "DAGYO_SPARE_IDLE_S": "0",
    }
    got = SchedulerSettings.from_env(env)
    assert got == SchedulerSettings(
        queue_url="amqp://u:p@rabbit:5672/%2F",
        address="0.0.0.0:6000",
        state_path=":memory:",
        progdefs=tmp_path,
        heartbeat_timeout_s=2.5,
        export_cap_bytes=1000,
        metrics_port=0,
        require_consumers=False,
        ui_address="127.0.0.1:0",
        spare_idle_s=0.0,
        queue_type=QueueType.CLASSIC,  # one broker URL: classic durable queues
    )
    assert (got.host, got.port) == ("0.0.0.0", 6000)


def test_settings_defaults() -> None:
    got = SchedulerSettings.from_env({"XDG_STATE_HOME": "/var/lib/x"})
    assert got.queue_url == "amqp://guest:guest@localhost:5672/%2F"
    assert got.address == "localhost:50051"
    assert got.state_path == "/var/lib/x/dagyo/scheduler-localhost-5672-%2F.sqlite3"
    assert (got.heartbeat_timeout_s, got.metrics_port, got.require_consumers) == (15.0, 9101, True)
    assert got.spare_idle_s == 60.0
    assert default_state_path({}).endswith("/dagyo/scheduler-localhost-5672-%2F.sqlite3")
    assert SchedulerSettings.from_env({}, address="localhost:0").port == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DAGYO_HEARTBEAT_TIMEOUT_S", "soon", "DAGYO_HEARTBEAT_TIMEOUT_S='soon' is not a number"),
        ("DAGYO_HEARTBEAT_TIMEOUT_S", "0", "heartbeat_timeout_s must be above 0"),
        ("DAGYO_METRICS_PORT", "70000", "metrics_port must be 0 to 65535"),
        ("DAGYO_SCHEDULER", "localhost", "must be host:port"),
        ("DAGYO_REQUIRE_CONSUMERS", "maybe", "DAGYO_REQUIRE_CONSUMERS='maybe' is not a yes/no"),
        ("DAGYO_SPARE_IDLE_S", "-1", "DAGYO_SPARE_IDLE_S must be a number of seconds, at least 0"),
        ("DAGYO_SPARE_IDLE_S", "inf", "DAGYO_SPARE_IDLE_S must be a number of seconds"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(DagyoError, match=message):
        SchedulerSettings.from_env({name: value})


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_server_serves_metrics_and_health() -> None:
    metrics = SchedulerMetrics()
    metrics.observe(
        flows_by_state=lambda: {"running": 2, "failed": 1},
        jobs_running=lambda: 5,
        heartbeat_ages=lambda: {"greet-1": 1.5},
    )
    metrics.panics.labels("greet", "FAILURE_KIND_PANIC").inc()
    healthy = [True]
    server = MetricsServer(port=0, metrics=metrics, healthy=lambda: healthy[0])
    server.start()
    try:
        base = f"http://localhost:{server.port}"
        status, text = fetch(base + "/metrics")
        assert status == 200
        assert 'dagyo_scheduler_flows{state="running"} 2.0' in text
        assert "dagyo_scheduler_jobs_running 5.0" in text
        assert 'dagyo_scheduler_heartbeat_age_seconds{executor="greet-1"} 1.5' in text
        assert 'dagyo_scheduler_panics_total{kind="FAILURE_KIND_PANIC",progdef="greet"} 1.0' in text
        assert fetch(base + "/healthz") == (200, "ok\n")
        healthy[0] = False
        assert fetch(base + "/healthz")[0] == 503
        assert fetch(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_scheduler_counts_its_flows_on_its_metrics_port(settings: SchedulerSettings) -> None:
    port = free_port()
    client = Client(dataclasses.replace(settings, metrics_port=port))
    try:
        flow_id = client.submit({"name": "empty", "nodes": {}})
        assert end_of(client.watch(flow_id)).state == pb.FLOW_STATE_SUCCEEDED
        status, text = fetch(f"http://localhost:{port}/metrics")
        assert status == 200
        assert 'dagyo_scheduler_flows{state="succeeded"} 1.0' in text
        assert 'dagyo_scheduler_flows_ended_total{state="succeeded"} 1.0' in text
        assert fetch(f"http://localhost:{port}/healthz") == (200, "ok\n")
    finally:
        client.close()


def test_serve_runs_until_stopped(settings: SchedulerSettings) -> None:
    port = free_port()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(dataclasses.replace(settings, address=f"localhost:{port}"), stop=stop)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        channel = grpc.insecure_channel(f"localhost:{port}")
        grpc.channel_ready_future(channel).result(timeout=WAIT_S)
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        assert stub.List(pb.ListRequest(), timeout=WAIT_S).flows == []
        channel.close()
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive() and errors == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_a_signal(settings: SchedulerSettings, signum: int) -> None:
    port = free_port()
    env = dict(
        os.environ,
        DAGYO_QUEUE=settings.queue_url,
        DAGYO_SCHEDULER=f"localhost:{port}",
        DAGYO_STATE=settings.state_path,
        DAGYO_PROGDEFS=str(settings.progdefs),
        DAGYO_METRICS_PORT="0",
    )
    code = (
        "from scheduler.service.config import SchedulerSettings\n"
        "from scheduler.service.server import serve\n"
        "serve(SchedulerSettings.from_env())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        channel = grpc.insecure_channel(f"localhost:{port}")
        grpc.channel_ready_future(channel).result(timeout=WAIT_S)
        channel.close()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"dagyo scheduler: gRPC on localhost:{port}" in stderr
