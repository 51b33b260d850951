"""Fixtures shared by the whole suite: the repository paths and a real RabbitMQ."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

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
