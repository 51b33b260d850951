"""`dagyo validate` on inputs built to be large or odd: its output and its reading stay
bounded, and every problem is one clear line."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.commands import dagyo_bare
from tests.conftest import EXAMPLES, ROOT

# An unbounded read of /dev/zero would take the machine's memory: cap the process's.
MEMORY_CAP_BYTES = 2 * 1024**3


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def test_a_long_name_is_echoed_cut_as_the_scheduler_cuts_it(tmp_path: Path) -> None:
    flow = tmp_path / "long.json"
    flow.write_text(json.dumps({"name": "long", "nodes": {"n" * 1_000_000: {"progdef": "nope"}}}))
    result = dagyo_bare("validate", str(flow))
    assert result.returncode == 2, result.stderr[:1000]
    (line,) = result.stderr.splitlines()
    assert "more characters not shown" in line and len(line) < 1000


def test_an_endless_file_is_read_only_up_to_the_message_limit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": str(ROOT),
            "DAGYO_MAX_MESSAGE_BYTES": "65536",
        },
        preexec_fn=_capped,
    )
    assert result.returncode == 2, result.stderr[:1000]
    assert result.stderr == (
        "dagyo: /dev/zero: the flow is more than 65536 bytes, the most the scheduler accepts "
        "in one request (DAGYO_MAX_MESSAGE_BYTES)\n"
    )


def test_a_number_out_of_range_is_named_so_not_infinity(tmp_path: Path) -> None:
    flow = json.loads((EXAMPLES / "hello.json").read_text())
    flow["consts"] = [{"to": "names.count", "values": [1]}]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(flow).replace('"values": [1]', '"values": [1e400]'))
    result = dagyo_bare("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "1e400 is a number out of range" in result.stderr, result.stderr
    assert "Infinity" not in result.stderr
