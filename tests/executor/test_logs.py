"""DAGYO_LOG_FORMAT=json: one JSON object a line, with the job's context fields."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from executor.core.errors import DagyoError
from executor.core.logs import JsonFormatter, log_format
from tests.conftest import ROOT


def test_a_job_log_line_carries_flow_and_node() -> None:
    logger = logging.LoggerAdapter(
        logging.getLogger("dagyo.job.greet"), {"flow": "f1", "node": "hi"}
    )
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logging.getLogger("dagyo.job.greet").addHandler(handler)
    try:
        try:
            raise ValueError("bad item")
        except ValueError:
            logger.exception("retrying item (attempt %d of %d)", 2, 3)
    finally:
        logging.getLogger("dagyo.job.greet").removeHandler(handler)
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["message"] == "retrying item (attempt 2 of 3)"
    assert (line["flow"], line["node"], line["level"]) == ("f1", "hi", "error")
    assert "ValueError: bad item" in line["traceback"]
    assert line["time"].endswith("+00:00")


def test_an_unknown_format_names_the_variable() -> None:
    with pytest.raises(DagyoError, match="DAGYO_LOG_FORMAT='xml': use human or json"):
        log_format({"DAGYO_LOG_FORMAT": "xml"})


def test_configured_processes_write_one_json_object_a_line() -> None:
    code = (
        "from executor.core.logs import configure_logging; import logging; configure_logging(); "
        "logging.getLogger('dagyo.scheduler').warning('flow %s: clean-up waits', 'f9', "
        "extra={'flow': 'f9'})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DAGYO_LOG_FORMAT": "json"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [line] = done.stderr.splitlines()
    data = json.loads(line)
    assert data["message"] == "flow f9: clean-up waits" and data["flow"] == "f9"
    assert data["logger"] == "dagyo.scheduler" and data["level"] == "warning"
