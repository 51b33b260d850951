"""`python -m executor`: start-up, health endpoints, metrics, and its exit statuses."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.cluster import copy_catalogue
from tests.commands import get, read_until, start_executor


def test_it_derives_its_mailbox_serves_health_and_drains_on_sigterm(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    process = start_executor(catalogue / "greet", DAGYO_QUEUE=broker_url)
    try:
        version = (catalogue / "greet" / "VERSION").read_text().strip()
        line = read_until(process, "pulling")
        assert f"pulling dagyo.mailbox.greet.{version} (derived from" in line
        ready = read_until(process, "ready")
        port = int(re.search(r"health on port (\d+)", ready).group(1))  # type: ignore[union-attr]
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz") == (200, "ok\n")
        status, metrics = get(port, "/metrics")
        assert status == 200
        assert "dagyo_executor_jobs_running 0.0" in metrics
        assert "dagyo_executor_heartbeat_age_seconds" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        connection.channel().queue_delete(f"dagyo.mailbox.greet.{version}")
        connection.close()


def test_an_unreachable_broker_is_one_line_and_exit_3(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    process = start_executor(catalogue / "greet", DAGYO_QUEUE="amqp://guest:secret@localhost:1/%2F")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    lines = [line for line in stderr.splitlines() if not line.startswith("executor greet:")]
    assert lines == [
        "executor: cannot reach the broker at amqp://guest:***@localhost:1/%2F "
        "(AMQPConnectionError): start RabbitMQ (e.g. `rabbitmq-server -detached`) or set "
        "DAGYO_QUEUE to its amqp:// URL"
    ]


def test_a_bad_progdef_exits_2_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "progdef.json").write_text('{"name": "Bad Name"}')
    process = start_executor(tmp_path)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"{tmp_path / 'progdef.json'}: name 'Bad Name' must match" in stderr
    assert "Traceback" not in stderr
