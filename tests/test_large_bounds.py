"""A 300 MB dagyo.types.Bytes item from one progdef to another (examples/large), embedded
(`dagyo run`) and on a local cluster (`dagyo up`): it arrives whole (its SHA-256), nothing
is left in the object store, and no process's peak RSS passes 3 × the item + 200 MB.

The item is made and hashed by the processes under test, never by this one: its expected
SHA-256 is computed a block at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from executor.core.objects import open_store
from scheduler.local_cluster import private_catalogue
from tests.commands import dagyo_up, free_address, run_dagyo
from tests.conftest import ROOT
from tests.listening import process_tree
from tests.waiting import eventually

# Each runs `dagyo run` or `dagyo up` on 300 MB: started first under xdist.
pytestmark = pytest.mark.slow

SIZE = 300_000_000
BOUND = 3 * SIZE + 200_000_000
LARGE = ROOT / "examples" / "large"


def expected_digest(size: int) -> str:
    """The SHA-256 of make_bytes' ``size`` bytes (byte i is i % 256), a block at a time."""
    block = bytes(range(256)) * 4096
    sha = hashlib.sha256()
    for _ in range(size // len(block)):
        sha.update(block)
    sha.update(block[: size % len(block)])
    return sha.hexdigest()


def large_flow(folder: Path) -> Path:
    """examples/large/large.json with a make.size of :data:`SIZE`."""
    flow = json.loads((LARGE / "large.json").read_text())
    flow["consts"] = [{"to": "make.size", "values": [{"value": SIZE}]}]
    path = folder / "large.json"
    path.write_text(json.dumps(flow))
    return path


def peak_rss(pid: int) -> int:
    """The peak RSS of a live process (VmHWM), bytes; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def test_embedded_a_300_mb_item_arrives_whole_within_the_memory_bound(tmp_path: Path) -> None:
    flow = large_flow(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGYO_OBJECTS": (tmp_path / "objects").as_uri(),
        "DAGYO_CACHE_DIR": str(tmp_path / "cache"),
    }
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        run = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "run", str(flow), "--no-cache"]
            + ["--progdefs", str(LARGE / "progdefs")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )

        def ended() -> tuple[int, resource.struct_rusage] | None:
            pid, status, usage = os.wait4(run.pid, os.WNOHANG)
            return (status, usage) if pid else None

        try:
            # The runner's own usage (and its children's, were there any): its peak RSS.
            waited = eventually(ended, 600, what="the end of dagyo run")
        except BaseException:
            run.kill()
            run.wait()
            raise
        assert waited is not None
        status, usage = waited
        run.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert run.returncode == 0, (tmp_path / "err").read_text()
    assert usage.ru_maxrss * 1024 < BOUND, f"dagyo run's peak RSS {usage.ru_maxrss} KiB"
    assert open_store((tmp_path / "objects").as_uri()).children("flows/") == []
    lines = [json.loads(line) for line in (tmp_path / "out").read_text().splitlines()]
    assert lines == [{"export": "digest", "value": {"text": expected_digest(SIZE)}}]


def test_up_a_300_mb_item_arrives_whole_within_the_memory_bound(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = private_catalogue(
        LARGE / "progdefs", tmp_path / "progdefs", ["make_bytes", "sha256"], tag="bounds"
    )
    objects = tmp_path / "objects"
    address = free_address("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    env.update(
        DAGYO_QUEUE=broker_url,
        DAGYO_STATE=str(tmp_path / "state.db"),
        DAGYO_SCHEDULER=address,
        DAGYO_OBJECTS=objects.as_uri(),
        DAGYO_UI="off",
        PYTHONPATH=str(ROOT),
    )
    with dagyo_up("--progdefs", str(catalogue), "--listen", address, env=env) as up:
        submitted = run_dagyo("flow", "submit", str(large_flow(tmp_path)), "--wait", env=env)
        peaks = {pid: peak_rss(pid) for pid in process_tree(up.pid)}
        assert submitted.returncode == 0, submitted.stderr
        up.send_signal(signal.SIGINT)
        assert up.wait(120) == 0
    lines = [json.loads(line) for line in submitted.stdout.splitlines()]
    assert lines == [{"export": "digest", "value": {"text": expected_digest(SIZE)}}]
    assert open_store(objects.as_uri()).children("flows/") == []
    over = {command_of(pid): peak for pid, peak in peaks.items() if peak > BOUND}
    assert len(peaks) >= 3, peaks  # dagyo up (its scheduler runs in it), both executors
    assert not over, f"peak RSS past {BOUND} bytes: {over}"
