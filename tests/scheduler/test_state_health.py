"""A scheduler whose PostgreSQL goes away: it refuses submit and cancel naming the database
(UNAVAILABLE, exit 3), says NOT_SERVING on gRPC health and 503 on /healthz, and serves
again by itself once the database answers.

The database goes away for real: the scheduler reaches it through a TCP proxy of the
test's own, which is closed (its listening socket and every connection through it) and
opened again on the same port; the shared server itself never stops.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from executor.core.errors import SchedulerStateAway
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.commands import free_port, get, run_dagyo
from tests.postgres import fresh_database
from tests.scheduler.fake_executor import FLOW, FakeExecutor
from tests.waiting import eventually


class TcpProxy:
    """Forwards a loopback port to ``target``; :meth:`close` shuts the port and every
    connection through it, :meth:`open` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxied_state() -> Iterator[tuple[str, TcpProxy]]:
    """A database of its own, reached through a proxy: (its URL through the proxy, proxy)."""
    with fresh_database() as url:
        base, _, database = url.rpartition("/")
        host, _, port = base.rpartition("@")[2].rpartition(":")
        proxy = TcpProxy((host, int(port or 5432)))
        proxy.open()
        try:
            userinfo = base.partition("://")[2].rpartition("@")[0]
            at = f"{userinfo}@" if userinfo else ""
            yield f"postgresql://{at}127.0.0.1:{proxy.port}/{database}", proxy
        finally:
            proxy.close()


@pytest.fixture
def scheduler(
    settings: SchedulerSettings, fake: FakeExecutor, proxied_state: tuple[str, TcpProxy]
) -> Iterator[Scheduler]:
    state, _ = proxied_state
    started = Scheduler(dataclasses.replace(settings, state_path=state, metrics_port=free_port()))
    started.start()
    yield started
    started.stop()


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return int(answer.status)


def test_a_lost_database_stops_writes_says_so_in_health_and_comes_back_by_itself(
    scheduler: Scheduler, proxied_state: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    state, proxy = proxied_state
    metrics_port = scheduler.settings.metrics_port
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(FLOW))
    env = {"DAGYO_SCHEDULER": scheduler.address}
    assert health(scheduler.address) == health_pb2.HealthCheckResponse.SERVING
    assert get(metrics_port, "/healthz")[0] == 200
    before = run_dagyo("flow", "submit", str(flow), env=env)
    assert before.returncode == 0, before.stderr
    flow_id = before.stdout.strip()

    proxy.close()  # the database is unreachable from here on
    eventually(
        lambda: health(scheduler.address) == health_pb2.HealthCheckResponse.NOT_SERVING,
        60,
        what="gRPC health NOT_SERVING",
    )
    assert get(metrics_port, "/healthz")[0] == 503
    where = state.removeprefix("postgresql://")  # the URL names no password here
    for args in (["flow", "submit", str(flow)], ["flow", "cancel", flow_id]):
        refused = run_dagyo(*args, env=env)
        assert (refused.returncode, refused.stdout) == (3, ""), refused.stderr
        (line,) = refused.stderr.splitlines()
        assert line.startswith(f"dagyo: the scheduler at {scheduler.address} refused: ")
        assert f"its state, the database at postgresql://{where}, is unreachable" in line
        assert "submit and cancel are refused until it answers again" in line
    with SchedulerClient(scheduler.address) as client, pytest.raises(SchedulerStateAway):
        client.submit(json.dumps(FLOW))
    with (
        grpc.insecure_channel(scheduler.address) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        scheduler_pb2_grpc.SchedulerStub(channel).Submit(
            pb.SubmitRequest(flow_json=json.dumps(FLOW)), timeout=30
        )
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE

    proxy.open()  # the database answers again, on the same address
    eventually(
        lambda: health(scheduler.address) == health_pb2.HealthCheckResponse.SERVING,
        60,
        what="gRPC health SERVING again",
    )
    assert get(metrics_port, "/healthz")[0] == 200
    after = run_dagyo("flow", "submit", str(flow), env=env)
    assert after.returncode == 0, after.stderr
    listed = run_dagyo("flow", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert sorted(ids) == sorted([flow_id, after.stdout.strip()])
