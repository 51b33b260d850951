"""The JavaScript executor SDK's own tests (sdks/js/test, on Node's test runner)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_the_node_sdks_own_tests_pass(node_sdk: Path) -> None:
    result = subprocess.run(
        ["npm", "test"], cwd=node_sdk, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
