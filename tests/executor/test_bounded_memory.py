"""A progdef that sends a huge iterable keeps `dagyo run` within a fixed memory ceiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Peak RSS allowed for `dagyo run` of source(2,000,000) -> greet -> count. The items of a
# materialised send_all alone (2 million Text messages) take well over this.
PEAK_RSS_CEILING_MB = 200

# Runs `dagyo run` as a child and prints the child's peak RSS in kB (Linux ru_maxrss).
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
sys.stdout.write(done.stdout)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def test_send_all_of_two_million_items_stays_under_the_rss_ceiling(tmp_path: Path) -> None:
    count = 2_000_000
    flow = tmp_path / "big.json"
    flow.write_text(
        json.dumps(
            {
                "name": "big",
                "nodes": {
                    "names": {"progdef": "source"},
                    "hi": {"progdef": "greet"},
                    "total": {"progdef": "count"},
                },
                "edges": [
                    {"from": "names.src", "to": "hi.name"},
                    {"from": "hi.greeting", "to": "total.items"},
                ],
                "consts": [{"to": "names.count", "values": [{"value": count}]}],
                "exports": {"total": "total.total"},
            }
        )
    )
    dagyo = [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(flow)]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *dagyo],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "", "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"], "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    *exports, peak_kb = result.stdout.splitlines()
    assert [json.loads(line) for line in exports] == [
        {"export": "total", "value": {"value": str(count)}}
    ]
    peak_mb = int(peak_kb) / 1024
    print(f"peak RSS of dagyo run: {peak_mb:.0f} MB")
    assert peak_mb < PEAK_RSS_CEILING_MB, f"peak RSS {peak_mb:.0f} MB"
