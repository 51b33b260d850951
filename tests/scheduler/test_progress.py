"""The progress line of `dagyo run` on a real terminal (a pty), as a user sees it."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.waiting import eventually

# Control sequences a terminal acts on without printing them (colours, cursor, erase).
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_pty(flow: Path) -> tuple[int, str]:
    """Run `dagyo run FLOW` with stdout and stderr on one pty that has no size."""
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(flow)],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": str(ROOT),
            "TERM": "xterm",
        },
        close_fds=True,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def ended() -> bool:
        """Read what came; True once the child closed its end (or exited, its end read)."""
        if not select.select([leader], [], [], 1)[0]:
            return process.poll() is not None
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            return True
        chunks.append(chunk)
        return not chunk

    eventually(ended, 60, poll=0, what=lambda: f"the end of:\n{b''.join(chunks).decode()}")
    os.close(leader)
    return process.wait(30), b"".join(chunks).decode()


def shown_lines(output: str) -> list[str]:
    """What stays on each line: the text after the line's last carriage return."""
    lines = output.replace("\r\n", "\n").split("\n")  # the pty turns \n into \r\n
    return [CONTROL.sub("", line).split("\r")[-1] for line in lines]


def test_each_export_is_on_its_own_line_and_the_progress_line_is_not_cut(
    tmp_path: Path,
) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(
        json.dumps(
            {
                "name": "progress-flow",
                "nodes": {"s": {"progdef": "source"}, "w": {"progdef": "slow"}},
                "edges": [{"from": "s.src", "to": "w.items"}],
                "consts": [
                    {"to": "s.count", "values": [{"value": 6}]},
                    {"to": "w.delay_ms", "values": [{"value": 250}]},
                ],
                "exports": {"slowly": "w.items"},
            }
        )
    )
    status, output = run_on_a_pty(flow)
    assert status == 0, output
    lines = shown_lines(output)
    exports = [line.rstrip() for line in lines if '"export"' in line]
    assert exports == [
        json.dumps({"export": "slowly", "value": {"text": f"name-{i}"}}) for i in range(6)
    ], output
    progress = [line for line in lines if "progress-flow:" in CONTROL.sub("", line)]
    assert progress, output
    # The whole line: wider than the 20 columns it was cut to on a pty with no size.
    assert any("w.items" in CONTROL.sub("", line) for line in output.split("\r")), output


def test_the_progress_line_shows_what_a_sink_received(tmp_path: Path) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(
        json.dumps(
            {
                "name": "sunk",
                "nodes": {
                    "s": {"progdef": "source"},
                    "w": {"progdef": "slow"},
                    "out": {"progdef": "void_sink"},
                },
                "edges": [
                    {"from": "s.src", "to": "w.items"},
                    {"from": "w.items", "to": "out.sink"},
                ],
                "consts": [
                    {"to": "s.count", "values": [{"value": 6}]},
                    {"to": "w.delay_ms", "values": [{"value": 250}]},
                ],
            }
        )
    )
    status, output = run_on_a_pty(flow)
    assert status == 0, output
    drawn = CONTROL.sub("", output)
    assert re.search(r"out\.sink [1-6] received", drawn), output
