"""What a progdef author relies on: init before the first job, own modules, retry logs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pika
import pytest

from tests.cluster import copy_catalogue
from tests.commands import get, read_until, start_executor
from tests.conftest import ROOT
from tests.embedded import TEXT, catalogue_with, make_progdef, run_flow, source


def _flaky(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "flaky",
        """
        from executor.core.types import Text
        seen = set()

        def handler(ctx, item):
            if item.text not in seen:
                seen.add(item.text)
                raise TimeoutError("the service did not answer")
            return Text(text="ok " + item.text)
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        style="function",
        retries={"attempts": 2, "backoff_ms": 1},
    )


def test_the_retry_log_line_names_the_node_the_attempt_and_the_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _flaky(tmp_path)
    caplog.set_level(logging.WARNING)
    exports, result = run_flow(
        {
            "name": "retry-flow",
            "nodes": {"s": {"progdef": "source"}, "f": {"progdef": "flaky"}},
            "edges": [{"from": "s.src", "to": "f.items"}],
            "consts": [{"to": "s.count", **source(1)}],
            "exports": {"out": "f.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "succeeded", result.failure
    assert exports == {"out": [{"text": "ok name-0"}]}
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries == [
        "node f (progdef flaky): retrying item (attempt 2 of 2) after "
        "TimeoutError: the service did not answer"
    ]


SLOW_INIT = """
import sys
import time

def init(ctx):
    time.sleep(1)
    ctx.greeting = "hi "
    print("init finished", file=sys.stderr, flush=True)

def handler(ctx, item):
    return item
"""

FAILING_INIT = """
def load_model():
    raise FileNotFoundError("model.bin is missing")

def init(ctx):
    load_model()

def handler(ctx, item):
    return item
"""


def _with_init(tmp_path: Path, name: str, code: str) -> Path:
    make_progdef(
        tmp_path,
        name,
        code,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        init="main:init",
        style="function",
    )
    return tmp_path / name


def test_an_executor_runs_init_before_it_says_ready(broker_url: str, tmp_path: Path) -> None:
    process = start_executor(_with_init(tmp_path, "warm", SLOW_INIT), DAGYO_QUEUE=broker_url)
    mailbox = ""
    try:
        read_until(process, "init finished")  # before any job: init runs at start
        mailbox = re.search(r"pulling (\S+)", read_until(process, "pulling")).group(1)  # type: ignore[union-attr]
        ready = read_until(process, "ready")
        port = int(re.search(r"health on port (\d+)", ready).group(1))  # type: ignore[union-attr]
        assert get(port, "/readyz") == (200, "ok\n")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        if mailbox:
            connection = pika.BlockingConnection(pika.URLParameters(broker_url))
            connection.channel().queue_delete(mailbox)
            connection.close()


def test_an_executor_whose_init_fails_exits_2_naming_the_progdef(
    broker_url: str, tmp_path: Path
) -> None:
    process = start_executor(_with_init(tmp_path, "broken", FAILING_INIT), DAGYO_QUEUE=broker_url)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if "pulling" not in line]
    assert lines[0] == (
        "executor: progdef broken: init failed: FileNotFoundError: model.bin is missing"
    )
    assert "Traceback" not in stderr
    assert "executor/" not in stderr  # only the author's frames
    assert any("in load_model" in line for line in lines[1:])


def test_dagyo_run_reports_a_failing_init_as_a_start_up_error(tmp_path: Path) -> None:
    _with_init(tmp_path, "broken", FAILING_INIT)
    flow = tmp_path / "flow.json"
    flow.write_text(
        json.dumps(
            {
                "name": "broken-flow",
                "nodes": {"s": {"progdef": "source"}, "b": {"progdef": "broken"}},
                "edges": [{"from": "s.src", "to": "b.items"}],
                "consts": [{"to": "s.count", **source(1)}],
                "exports": {"out": "b.out"},
            }
        )
    )
    catalogue = copy_catalogue(tmp_path / "catalogue", ("source",))
    shutil.copytree(tmp_path / "broken", catalogue / "broken")
    result = subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(flow)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": str(ROOT),
            "DAGYO_PROGDEFS": str(catalogue),
        },
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "dagyo: progdef broken: init failed: FileNotFoundError: model.bin is missing"
    )
    assert "Traceback" not in result.stderr


def _with_helpers(root: Path, name: str, word: str) -> None:
    make_progdef(
        root,
        name,
        """
        import helpers
        from helpers import decorate

        from executor.core.types import Text

        def handler(ctx, item):
            return Text(text=decorate(item.text) + helpers.SUFFIX)
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        style="function",
    )
    (root / name / "helpers.py").write_text(
        f"SUFFIX = '.'\n\ndef decorate(text):\n    return '{word} ' + text\n"
    )


def test_two_progdefs_each_import_their_own_helpers_module(tmp_path: Path) -> None:
    _with_helpers(tmp_path, "shout", "HEY")
    _with_helpers(tmp_path, "whisper", "psst")
    exports, result = run_flow(
        {
            "name": "helpers-flow",
            "nodes": {
                "s": {"progdef": "source"},
                "a": {"progdef": "shout"},
                "b": {"progdef": "whisper"},
            },
            "edges": [{"from": "s.src", "to": "a.items"}, {"from": "a.out", "to": "b.items"}],
            "consts": [{"to": "s.count", **source(2)}],
            "exports": {"out": "b.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "succeeded", result.failure
    assert exports == {"out": [{"text": f"psst HEY name-{i}.."} for i in range(2)]}
    assert "helpers" not in sys.modules  # nothing leaks into the process's own modules
