"""What a progdef author relies on: init before the first job, own modules, retry logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.executor.test_sdk import TEXT, catalogue_with, make_progdef
from tests.scheduler.test_embedded import run_flow, source


def _flaky(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "flaky",
        """
        from executor.types import Text
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
