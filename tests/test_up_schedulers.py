"""`dagyo up --schedulers N`: N schedulers sharing one PostgreSQL state and one vhost, on
consecutive ports; refused before anything starts on a SQLite state."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.commands import lines_until, run_dagyo
from tests.several_schedulers import alive, serving, two_schedulers
from tests.waiting import eventually

# Each runs a cluster: started first under xdist.
pytestmark = pytest.mark.slow

SQLITE_REFUSED = (
    "dagyo: --schedulers 2: schedulers can only share a PostgreSQL state, not a SQLite file "
    "({state}): set DAGYO_STATE (or --state) to postgresql://USER@HOST:5432/DATABASE, or run "
    "one scheduler"
)


@pytest.mark.parametrize("state", ["", "flows.sqlite3", ":memory:"])
def test_several_schedulers_on_a_sqlite_state_exit_2_before_anything_starts(
    state: str, tmp_path: Path
) -> None:
    # No broker answers there: had anything started, it would exit 3.
    env = {"DAGYO_QUEUE": "amqp://guest:guest@127.0.0.1:1/%2F", "DAGYO_STATE": state}
    done = run_dagyo("up", "--schedulers", "2", "--progdefs", str(tmp_path / "none"), env=env)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    shown = state or "the default one"
    assert done.stderr.splitlines() == [SQLITE_REFUSED.format(state=shown)]


def test_two_schedulers_share_a_postgresql_state_and_answer_on_consecutive_ports(
    amqp_url: str, tmp_path: Path
) -> None:
    with two_schedulers(amqp_url, tmp_path, ("greet",)) as (up, addresses, env, printed, log):
        first, second = addresses
        assert printed[0] == f"scheduler: listening on {first}\n"
        child = re.fullmatch(rf"scheduler: listening on {second} \(pid (\d+)\)\n", printed[1])
        assert child is not None, printed
        # The status of the cluster: each scheduler answers, on its own address.
        for address in addresses:
            assert serving(address)
            listed = run_dagyo("flow", "list", env={**env, "DAGYO_SCHEDULER": address})
            assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr
        both = run_dagyo("flow", "list", env={**env, "DAGYO_SCHEDULER": ",".join(addresses)})
        assert (both.returncode, both.stdout) == (0, ""), both.stderr
        up.send_signal(signal.SIGINT)
        assert up.wait(120) == 0, log.read_text()
    assert not alive(int(child.group(1))), "a scheduler process outlived `dagyo up`"


def test_a_killed_scheduler_process_is_started_again_on_its_address(
    amqp_url: str, tmp_path: Path
) -> None:
    with two_schedulers(amqp_url, tmp_path, ("greet",)) as (up, addresses, _, printed, log):
        second = addresses[1]
        pid = int(printed[1].rpartition("pid ")[2].rstrip(")\n"))
        os.kill(pid, signal.SIGKILL)
        assert up.stdout is not None
        again = lines_until(up.stdout, r"^scheduler: listening on ", [], timeout_s=60)
        new_pid = int(again.rpartition("pid ")[2].rstrip(")\n"))
        assert again == f"scheduler: listening on {second} (pid {new_pid})\n"
        assert new_pid != pid
        eventually(lambda: serving(second), 60, what=f"the scheduler on {second} serving")
        assert (
            f"dagyo: scheduler {second} (pid {pid}) exited with status -9; starting it again in 1 s"
        ) in log.read_text().splitlines()
        up.send_signal(signal.SIGINT)
        assert up.wait(120) == 0, log.read_text()
    assert not alive(new_pid)
