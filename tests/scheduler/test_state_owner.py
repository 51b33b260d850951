"""Each broker's scheduler keeps its own state file, and refuses another broker's."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.core.errors import DagyoError
from scheduler.service.config import SchedulerSettings, broker_identity, default_state_path
from scheduler.service.store import SqliteStore
from tests.commands import dagyo, free_address, run_dagyo


def test_the_default_state_file_is_specific_to_host_port_and_vhost(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    folder = tmp_path / "dagyo"
    assert default_state_path(env, "amqp://guest:guest@localhost:5672/%2F") == str(
        folder / "scheduler-localhost-5672-%2F.sqlite3"
    )
    assert default_state_path(env, "amqp://u:p@Rabbit.example:5673/team%2Fa") == str(
        folder / "scheduler-rabbit.example-5673-team%2Fa.sqlite3"
    )
    assert default_state_path(env, "amqps://rabbit/b") == str(
        folder / "scheduler-rabbit-5671-b.sqlite3"
    )
    settings = SchedulerSettings.from_env({**env, "DAGYO_QUEUE": "amqp://h:5672/blue"})
    assert settings.state_path == str(folder / "scheduler-h-5672-blue.sqlite3")
    explicit = {**env, "DAGYO_QUEUE": "amqp://h/blue", "DAGYO_STATE": str(tmp_path / "s.db")}
    assert SchedulerSettings.from_env(explicit).state_path == str(tmp_path / "s.db")


def test_a_state_file_refuses_another_brokers_scheduler(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    SqliteStore(path, owner=broker_identity("amqp://guest:guest@localhost:5672/a")).close()
    SqliteStore(path, owner=broker_identity("amqp://other:secret@localhost:5672/a")).close()
    with pytest.raises(DagyoError) as refused:
        SqliteStore(path, owner=broker_identity("amqp://guest:guest@localhost:5672/b"))
    assert str(refused.value) == (
        f"the state file {path} belongs to the scheduler of localhost:5672 vhost a, not "
        "localhost:5672 vhost b: give this scheduler a state file of its own (--state or "
        "DAGYO_STATE)"
    )


def test_dagyo_scheduler_on_another_brokers_state_file_exits_2(
    tmp_path: Path, broker_url: str
) -> None:
    path = str(tmp_path / "state.sqlite3")
    SqliteStore(path, owner=broker_identity("amqp://guest:guest@elsewhere:5672/x")).close()
    done = run_dagyo(
        "scheduler",
        "--state",
        path,
        "--no-ui",
        env={
            "DAGYO_QUEUE": broker_url,
            "DAGYO_SCHEDULER": free_address(),
            "DAGYO_METRICS_PORT": "0",
        },
    )
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith(f"dagyo: the state file {path} belongs to the scheduler of elsewhere")


@pytest.mark.parametrize("command", ["up", "scheduler"])
def test_help_shows_the_state_option_and_its_variable(command: str) -> None:
    result = dagyo(command, "--help")
    assert result.exit_code == 0
    assert "--state PATH" in result.stdout and "DAGYO_STATE" in result.stdout


def test_unwritable_state_path_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DagyoError, match="DAGYO_STATE"):
        SqliteStore(str(blocker / "state.sqlite3"))
