"""DAGYO_QUEUE as a list of broker URLs: how it splits, what is checked and what names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from executor.core.amqp import broker_node, connect
from executor.core.brokerurls import first_url, split_urls
from executor.core.errors import BrokerUnavailable, BrokerUrlInvalid, redact_url
from executor.core.settings import check_url, vhost_of
from scheduler.client.failures import FailureFollower
from scheduler.service.config import broker_identity, default_state_path
from tests.conftest import PROGDEFS, ROOT
from tests.waiting import eventually

SECRET = "s3cr3tpw"
# A port nothing listens on: a broker node that is down refuses connections like it.
DOWN = f"amqp://guest:{SECRET}@127.0.0.1:1/%2F"
SHARED = "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_a_list_splits_only_where_another_url_starts() -> None:
    assert split_urls("amqp://u:p@h1:5672/v;amqp://u:p@h2:5672/v") == [
        "amqp://u:p@h1:5672/v",
        "amqp://u:p@h2:5672/v",
    ]
    assert split_urls("amqp://h1/v ; AMQPS://h2/v") == ["amqp://h1/v", "AMQPS://h2/v"]
    # A ; in a password does not start a URL: it stays in its URL.
    assert split_urls("amqp://u:a;b@h1/v;amqp://h2/v") == ["amqp://u:a;b@h1/v", "amqp://h2/v"]
    assert split_urls(SHARED) == [SHARED]
    assert first_url(f"{SHARED};{DOWN}") == SHARED


def test_every_url_of_a_list_is_checked_and_the_bad_one_named_without_passwords() -> None:
    check_url(f"{SHARED};amqp://guest:guest@h2:5673/%2F")
    with pytest.raises(BrokerUrlInvalid) as caught:
        check_url(f"amqp://guest:{SECRET}@h1/v;amqp://guest:{SECRET}@h2:99999/v")
    message = str(caught.value)
    assert "amqp://guest:***@h2:99999/v" in message and "port must be a number" in message
    assert SECRET not in message
    for bad in (f"{SHARED};", f"{SHARED};;{SHARED}", f"{SHARED};h2:5672/v"):
        with pytest.raises(BrokerUrlInvalid, match="separated by ;"):
            check_url(bad)


def test_redacting_a_list_hides_every_password() -> None:
    listed = f"amqp://guest:{SECRET}@h1/v;amqp://guest:{SECRET}@h2/v"
    assert redact_url(listed) == "amqp://guest:***@h1/v;amqp://guest:***@h2/v"


def test_the_first_url_names_the_broker() -> None:
    listed = f"amqp://guest:{SECRET}@h1:5701/vh;amqp://guest:{SECRET}@h2:5702/other"
    assert broker_identity(listed) == "h1:5701 vhost vh"
    assert vhost_of(listed) == "vh"
    environ = {"XDG_STATE_HOME": "/state"}
    assert default_state_path(environ, listed) == default_state_path(
        environ, "amqp://guest:guest@h1:5701/vh"
    )


def test_a_connection_goes_to_the_first_url_that_answers() -> None:
    connection = connect(f"{DOWN};{SHARED}")
    try:
        assert broker_node(connection) == "127.0.0.1:5672"
    finally:
        connection.close()
    connection = connect(f"{SHARED};{DOWN}")
    try:
        assert broker_node(connection) == "127.0.0.1:5672"
    finally:
        connection.close()


def test_when_no_url_answers_the_list_is_named_without_passwords() -> None:
    down_too = f"amqp://guest:{SECRET}@127.0.0.1:2/%2F"
    with pytest.raises(BrokerUnavailable) as caught:
        connect(f"{DOWN};{down_too}")
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "127.0.0.1:2" in message
    assert SECRET not in message


def test_an_executor_and_a_failure_follower_start_on_the_second_url_when_the_first_is_down(
    broker_url: str, tmp_path: Path
) -> None:
    queue = f"{DOWN};{broker_url}"
    follower = FailureFollower(queue)
    follower.connect()
    follower.close()
    env = dict(
        os.environ,
        DAGYO_QUEUE=queue,
        DAGYO_QUEUE_TYPE="classic",
        DAGYO_JOBS=f"dagyo.test.urls.{uuid.uuid4().hex[:8]}",
        DAGYO_METRICS_PORT="-1",
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "executor.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "executor", str(PROGDEFS / "greet")],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: "ready" in log.read_text(), what=lambda: log.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        connection = connect(broker_url)
        connection.channel().queue_delete(env["DAGYO_JOBS"])
        connection.close()
    assert SECRET not in log.read_text()
