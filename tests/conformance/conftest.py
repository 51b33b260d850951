"""Fixtures of the conformance suite: the executor under test and the scheduler's side.

The options (``--executor-command``, ``--runtime``) are added in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.executors import ExecutorCommand, RunningExecutor, start_executor
from tests.conformance.wire import Wire

StartExecutor = Callable[..., RunningExecutor]


@pytest.fixture(scope="session")
def executor_command(pytestconfig: pytest.Config) -> ExecutorCommand:
    return ExecutorCommand.from_config(pytestconfig)


@pytest.fixture(scope="module")
def wire(broker_url: str) -> Iterator[Wire]:
    """The scheduler's side, for one module; deletes the queues it declared."""
    wire = Wire(broker_url)
    yield wire
    wire.close()


@pytest.fixture(scope="module")
def start(
    executor_command: ExecutorCommand, wire: Wire, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartExecutor]:
    """Starts executors for a module; each is stopped (SIGTERM) at its end."""
    started: list[RunningExecutor] = []

    def start(progdef: str, **env: str) -> RunningExecutor:
        log = tmp_path_factory.mktemp(progdef) / "executor.log"
        running = start_executor(executor_command, wire, progdef, log, **env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.terminate()
