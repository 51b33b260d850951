"""Fixtures shared by the whole suite: the repository paths and a real RabbitMQ."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The tests start executors with subprocess.Popen from a process with live gRPC channels and
# servers; with gRPC's fork handlers on, the child can die before it execs (grpc/grpc#43055:
# "epoll_wait error: Bad file descriptor"). Set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

ROOT = Path(__file__).resolve().parent.parent
PROGDEFS = ROOT / "progdefs"
EXAMPLES = ROOT / "examples"

HOW_TO_START = (
    "no RabbitMQ for the tests: start one (`rabbitmq-server -detached`, or "
    "`docker run -d -p 5672:5672 rabbitmq:3`), or set DAGYO_TEST_AMQP_URL to an amqp:// URL"
)


def _reachable(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A reachable RabbitMQ: DAGYO_TEST_AMQP_URL, else localhost:5672, else a container.

    Fails (never skips) when none can be had, saying how to start one.
    """
    url = os.environ.get("DAGYO_TEST_AMQP_URL")
    if url:
        if not _reachable(url):
            pytest.fail(f"DAGYO_TEST_AMQP_URL={url} is not reachable; {HOW_TO_START}")
        yield url
        return
    local = "amqp://guest:guest@localhost:5672/%2F"
    if _reachable(local):
        yield local
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13")
        container.start()
    except Exception as e:  # no Docker either
        pytest.fail(f"{HOW_TO_START} ({type(e).__name__}: {e})")
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/%2F"
    finally:
        container.stop()


@pytest.fixture(scope="session")
def broker_url(amqp_url: str) -> Iterator[str]:
    """amqp_url on a vhost of the suite's own, when rabbitmqctl can make one.

    A vhost of its own keeps the suite's schedulers and a `dagyo up` (or another test run)
    on the same broker from competing for the scheduler's events queue.
    """
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = f"dagyo-test-{uuid.uuid4().hex[:8]}"
    if parts.hostname not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmqctl"):
        yield amqp_url
        return
    try:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError):
        yield amqp_url
        return
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, "")))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl (the broker's own tool) and return what it printed."""
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def vhost_of(url: str) -> str:
    """The vhost an amqp:// URL names (``/`` when it names none)."""
    path = urllib.parse.urlsplit(url).path.lstrip("/")
    return urllib.parse.unquote(path) or "/"
