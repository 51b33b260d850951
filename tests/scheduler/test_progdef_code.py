"""A progdef's `run` that names no function, or a module that does not import, is a catalogue
problem (exit 2 from validate, run and up, with a did-you-mean), not a flow failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cluster import copy_catalogue
from tests.commands import dagyo_bare, free_address
from tests.conftest import EXAMPLES, ROOT


def misspelt(tmp_path: Path, run: str) -> Path:
    catalogue = copy_catalogue(tmp_path / "progdefs", ("source", "greet", "void_sink"))
    path = catalogue / "greet" / "progdef.json"
    document = json.loads(path.read_text())
    document["run"] = run
    path.write_text(json.dumps(document))
    return catalogue


def test_a_run_naming_no_function_is_refused_at_catalogue_load_with_a_did_you_mean(
    tmp_path: Path,
) -> None:
    catalogue = misspelt(tmp_path, "main:handlr")
    expected = (
        f"dagyo: {catalogue / 'greet' / 'progdef.json'}: progdef greet: 'main:handlr' names no "
        "function: define handlr() in main (did you mean 'handler'?)\n"
    )
    for command in ("validate", "run"):
        done = dagyo_bare(command, str(EXAMPLES / "hello.json"), "--progdefs", str(catalogue))
        assert (done.returncode, done.stdout, done.stderr) == (2, "", expected), command


def test_invoke_local_refuses_a_run_naming_no_function(tmp_path: Path) -> None:
    catalogue = misspelt(tmp_path, "main:handlr")
    done = dagyo_bare(
        "invoke", "greet", "--input", 'name="Ada"', "--local", "--progdefs", str(catalogue)
    )
    assert done.returncode == 2, done.stderr
    assert "'main:handlr' names no function" in done.stderr and "Traceback" not in done.stderr


def test_a_run_naming_no_module_is_refused_with_a_did_you_mean(tmp_path: Path) -> None:
    catalogue = misspelt(tmp_path, "mian:handler")
    done = dagyo_bare("validate", str(EXAMPLES / "hello.json"), "--progdefs", str(catalogue))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"dagyo: {catalogue / 'greet' / 'progdef.json'}: progdef greet: ")
    assert line.endswith("(did you mean 'main'?)"), line


def test_up_refuses_a_catalogue_whose_run_names_no_function(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = misspelt(tmp_path, "main:handlr")
    env = {
        **os.environ,
        "DAGYO_QUEUE": broker_url,
        "DAGYO_STATE": ":memory:",
        "DAGYO_SCHEDULER": free_address("127.0.0.1"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DAGYO_PROGDEFS", None)
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "up", "--progdefs", str(catalogue), "--no-ui"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "'main:handlr' names no function" in done.stderr
    assert "(did you mean 'handler'?)" in done.stderr
