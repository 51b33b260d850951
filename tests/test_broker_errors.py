"""What the executor and the CLI say about a broker URL that cannot work.

Each command runs as a process with DAGYO_QUEUE set to a bad URL: it must print one line
naming the problem, exit 2 (a malformed URL) or 3 (a broker that refuses or does not
answer), and never print the password, whatever it holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse

import pytest

from executor.core.errors import redact_url
from tests.conftest import PROGDEFS, ROOT

SECRET = "s3cr3tpw"
# A scheduler address nothing listens on, so `failures --follow` goes to the broker alone.
NO_SCHEDULER = "127.0.0.1:1"

COMMANDS = {
    "executor": [sys.executable, "-m", "executor", str(PROGDEFS / "greet")],
    "scheduler": ["dagyo", "scheduler", "--listen", "127.0.0.1:0"],
    "failures": ["dagyo", "failures", "--follow", "--broker", "--scheduler", NO_SCHEDULER],
    "up": ["dagyo", "up", "--listen", "127.0.0.1:0"],
}


def run(command: str, url: str, tmp_path: object) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        DAGYO_QUEUE=url,
        # -1: the executor serves no health endpoint; 0: neither does the scheduler.
        DAGYO_METRICS_PORT="-1" if command == "executor" else "0",
        DAGYO_STATE=str(tmp_path) + "/state.sqlite3",
        PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        COMMANDS[command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )


def the_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line a command printed (ignoring its notes of what it starts)."""
    lines = [
        line
        for line in result.stderr.splitlines()
        if line
        and "pulling" not in line
        and "past failures" not in line
        and "cannot reach the scheduler" not in line
    ]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def with_password(password: str, *, port: str = "5672", vhost: str = "%2F") -> str:
    return f"amqp://guest:{password}@127.0.0.1:{port}/{vhost}"


MALFORMED = {
    "hash": (with_password(f"a#{SECRET}"), "unencoded # / ? or @"),
    "slash": (with_password(f"a/{SECRET}"), "unencoded # / ? or @"),
    "question": (with_password(f"a?{SECRET}"), "unencoded # / ? or @"),
    "port out of range": (with_password(SECRET, port="99999"), "the port must be a number"),
    "port not a number": (with_password(SECRET, port="56x2"), "the port must be a number"),
    # Every password of a list is hidden, not only the last one's.
    "list, second port out of range": (
        f"{with_password(SECRET)};{with_password(SECRET + '2', port='99999')}",
        "the port must be a number",
    ),
    "list, first password unencoded": (
        f"{with_password(f'a/{SECRET}')};{with_password(SECRET + '2')}",
        "unencoded # / ? or @",
    ),
    "list not separated at a URL": (
        f"{with_password(SECRET)};127.0.0.1:5673/%2F",
        "several broker URLs are separated by ;",
    ),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_url_is_one_line_exit_2_and_hides_the_password(
    command: str, case: str, tmp_path: object
) -> None:
    url, reason = MALFORMED[case]
    result = run(command, url, tmp_path)
    assert result.returncode == 2, result.stderr
    line = the_line(result)
    assert "not a valid amqp:// URL" in line and reason in line
    assert "guest:***@" in line
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_missing_vhost_says_so(command: str, tmp_path: object) -> None:
    vhost = "dagyo-no-such-vhost"
    result = run(command, with_password("guest", vhost=vhost), tmp_path)
    assert result.returncode == 3, result.stderr
    line = the_line(result)
    assert f"vhost '{vhost}' does not exist" in line
    assert "start RabbitMQ" not in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_refused_credentials_say_so_and_hide_the_password(command: str, tmp_path: object) -> None:
    # Percent-encoded, as a valid URL holds it: the broker refuses it, nothing prints it.
    password = f"x#{SECRET}/?"
    result = run(command, with_password(urllib.parse.quote(password, safe="")), tmp_path)
    assert result.returncode == 3, result.stderr
    line = the_line(result)
    assert "the user name or password was refused" in line
    assert "start RabbitMQ" not in line
    assert SECRET not in result.stdout + result.stderr


def test_redact_url_never_raises_and_hides_every_password() -> None:
    for url in (
        f"amqp://guest:a#{SECRET}@host:5672/%2F",
        f"amqp://guest:a/{SECRET}?@host:99999/v",
        f"amqp://guest:{SECRET}@host:notaport/v",
        f"amqp://guest:a@{SECRET}@host/v",
        f"guest:{SECRET}@host",
        f"amqp://guest:{SECRET}@h1/v;amqp://guest:{SECRET}@h2/v;amqp://guest:{SECRET}@h3/v",
        f"amqp://guest:{SECRET}@h1/v; amqps://guest:a;{SECRET}@h2/v",
        f"amqp://guest:{SECRET}@h1/v;guest:{SECRET}@h2/v",
    ):
        redacted = redact_url(url)
        assert SECRET not in redacted and "guest:***@" in redacted, redacted
    assert redact_url("amqp://host:5672/%2F") == "amqp://host:5672/%2F"
