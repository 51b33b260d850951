"""`dagyo up --schedulers N` as a process, for the tests of several schedulers: two on a
vhost and a PostgreSQL database of their own, their addresses and what they printed."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cluster import copy_catalogue, own_vhost
from tests.commands import TEST_PORTS, lines_until
from tests.conftest import ROOT
from tests.postgres import fresh_database
from tests.waiting import eventually


def two_free_ports() -> int:
    """A port P of loopback such that P and P + 1 are free now."""

    def free_pair() -> int | None:
        # Outside the ephemeral range, which the suite's broker clients draw from.
        port = random.choice(TEST_PORTS)
        with socket.socket() as first:
            try:
                first.bind(("127.0.0.1", port))
            except OSError:
                return None
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    return None
        return port

    found = eventually(free_pair, 30, what="two consecutive free ports")
    assert found is not None
    return found


@contextmanager
def up_with_schedulers(
    count: int, env: dict[str, str], catalogue: Path, address: str, log: Path
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`dagyo up --schedulers COUNT` as a process, yielded with the `scheduler: …` lines it
    printed on stdout once its cluster is up (its stderr goes to ``log``)."""
    with open(log, "w") as stderr:
        up = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "up", "--schedulers", str(count)]
            + ["--progdefs", str(catalogue), "--listen", address],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert up.stdout is not None
        seen: list[str] = []
        for _ in range(count):
            lines_until(up.stdout, r"^scheduler: listening on ", seen, timeout_s=120)
        eventually(
            lambda: "the cluster is up" in log.read_text(),
            120,
            what=lambda: f"the cluster up, in:\n{log.read_text()}",
        )
        yield up, [line for line in seen if line.startswith("scheduler: ")]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def two_schedulers(
    amqp_url: str, tmp_path: Path, progdefs: tuple[str, ...]
) -> Iterator[tuple[subprocess.Popen[str], list[str], dict[str, str], list[str], Path]]:
    """`dagyo up --schedulers 2` on a vhost and a PostgreSQL database of its own: yields
    the process, the two addresses, the environment, the `scheduler: …` lines and the log."""
    catalogue = copy_catalogue(tmp_path / "progdefs", progdefs)
    port = two_free_ports()
    addresses = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    with own_vhost(amqp_url) as queue_url, fresh_database() as state:
        env = {
            **os.environ,
            "DAGYO_QUEUE": queue_url,
            "DAGYO_STATE": state,
            "DAGYO_UI": "off",
            "DAGYO_METRICS_PORT": "0",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("DAGYO_PROGDEFS", None)
        log = tmp_path / "up.log"
        with up_with_schedulers(2, env, catalogue, addresses[0], log) as (up, printed):
            yield up, addresses, env, printed, log


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
