"""A private RabbitMQ node for tests that take the broker away (never the shared one).

The node runs beside the shared broker on ports of its own, with its own data and logs in
a temporary folder owned by the ``rabbitmq`` user (the server runs as that user).
``outage()`` stops and starts its application: connections drop and the port refuses new
ones while the Erlang node itself stays up, which is what a broker restart looks like.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def _worker_index() -> int:
    """This pytest-xdist worker's number (``gw2`` -> 2); 0 when the suite runs in one process."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


# A node and ports per xdist worker: two workers' private nodes run side by side.
WORKER = _worker_index()
NODE = f"dagyo-outage-{WORKER}@localhost"
AMQP_PORT = 5682 + WORKER
DIST_PORT = 25682 + WORKER
URL = f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/%2F"
START_TIMEOUT_S = 60.0


class PrivateBroker:
    """One RabbitMQ node of the tests' own (see the module's docstring).

    Args:
        node, amqp_port, dist_port: its Erlang node name and ports; a test module that runs
            beside the outage tests gives its own.
    """

    def __init__(
        self,
        base: Path,
        *,
        node: str = NODE,
        amqp_port: int = AMQP_PORT,
        dist_port: int = DIST_PORT,
    ) -> None:
        self.base = base
        self.url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/%2F"
        self.node = node
        config = base / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = {amqp_port}\nloopback_users = none\nmanagement.tcp.port = 0\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        for folder in ("mnesia", "log"):
            (base / folder).mkdir()
        self.env = dict(
            os.environ,
            RABBITMQ_NODENAME=node,
            RABBITMQ_NODE_PORT=str(amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(config),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(base / "node.pid"),
        )
        shutil.chown(base, "rabbitmq", "rabbitmq")
        for path in base.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run rabbitmqctl against this node."""
        return subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    def start(self) -> None:
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self.env, check=True, timeout=60, cwd=self.base
        )
        self.ctl("wait", "--timeout", str(int(START_TIMEOUT_S)), str(self.base / "node.pid"))
        self.ctl("await_startup", "--timeout", str(int(START_TIMEOUT_S)))

    def stop_app(self) -> None:
        """The broker goes away: every connection drops, new ones are refused."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """The broker comes back."""
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", str(int(START_TIMEOUT_S)))

    def stop(self) -> None:
        try:
            self.ctl("stop")
        except subprocess.SubprocessError:
            pass  # never started, or gone already

    @contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Keep the broker down for at least ``seconds`` and while the block runs."""
        self.stop_app()
        started = time.monotonic()
        try:
            yield
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        finally:
            self.start_app()


def start_private_broker(prefix: str, **names: Any) -> PrivateBroker:
    """Start a node of the tests' own (see PrivateBroker for ``names``); fails the test,
    with the node's log, when it cannot start."""
    if not shutil.which("rabbitmq-server"):
        pytest.fail("these tests need rabbitmq-server installed (they start a node)")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    broker = PrivateBroker(base, **names)
    try:
        broker.start()
    except subprocess.SubprocessError as e:
        broker.stop()
        log = "\n".join(p.read_text() for p in (base / "log").glob("*.log"))
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"cannot start the private RabbitMQ node: {e}\n{log[-4000:]}")
    return broker


def stop_private_broker(broker: PrivateBroker) -> None:
    """Stop a node started by start_private_broker and delete its files."""
    broker.stop()
    shutil.rmtree(broker.base, ignore_errors=True)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of its own on port 5682, stopped at the end of the module."""
    broker = start_private_broker("dagyo-outage-")
    try:
        yield broker
    finally:
        stop_private_broker(broker)
