"""A malformed progdef.json, or a progdef whose modules misbehave at import, is one line
naming the file (or the module), the key and the bounds: at load, in every program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor._runtime.program import load_program
from executor.core.errors import DagyoError, ProgdefInvalid
from executor.core.progdef import load_catalogue, load_progdef
from tests.scheduler.checking import with_progdefs

ROOT = Path(__file__).resolve().parents[2]
GREET = json.loads((ROOT / "progdefs" / "greet" / "progdef.json").read_text())


def write(tmp_path: Path, text: str | bytes, name: str = "bad") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text("def handler(ctx, item):\n    return item\n")
    path = folder / "progdef.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return folder


def greet_with(section: str | None, key: str, value: Any) -> str:
    data = json.loads(json.dumps(GREET))
    (data[section] if section else data)[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            greet_with("scaling", "max_jobs", 100_000_000),
            "scaling.max_jobs 100000000 is out of bounds: from 1 to 10000",
        ),
        (greet_with("scaling", "max_jobs", 0), "scaling.max_jobs 0 is out of bounds"),
        (greet_with("resources", "gpu", True), "resources.gpu true must be a whole number >= 0"),
        (greet_with(None, "drain_grace_s", "soon"), "drain_grace_s must be a number"),
        (
            json.dumps(GREET).replace('"secrets"', '"drain_grace_s": NaN, "secrets"'),
            "drain_grace_s: NaN is not a JSON number",
        ),
        (
            json.dumps(GREET).replace('"secrets"', '"drain_grace_s": Infinity, "secrets"'),
            "drain_grace_s: Infinity is not a JSON number",
        ),
        (
            json.dumps(GREET).replace('"secrets"', '"name": "again", "secrets"'),
            "key 'name' appears twice in one object",
        ),
        (b'{"name": "\xff"}', "not UTF-8 text (byte 10)"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (
            greet_with("inputs", "name", "dagyo.types.Txt"),
            "input 'name': no message named 'dagyo.types.Txt' (did you mean 'dagyo.types.Text'?)",
        ),
        (greet_with(None, "deterministic", "yes"), 'deterministic "yes" must be true'),
        (
            greet_with(None, "concurrency", 0),
            "progdef 'greet': concurrency 0 must be a whole number from 1 to 1000 (how many "
            "items of one job are in flight at once)",
        ),
        (greet_with(None, "concurrency", 1001), "concurrency 1001 must be a whole number from 1"),
        (greet_with(None, "concurrency", "8"), 'concurrency "8" must be a whole number from 1'),
        (greet_with(None, "concurrency", 2.5), "concurrency 2.5 must be a whole number from 1"),
        (greet_with(None, "concurrency", True), "concurrency true must be a whole number from 1"),
        (
            greet_with(None, "style", "stream").replace('"main:handler"', '"main:run"')[:-1]
            + ', "concurrency": 4}',
            "progdef 'greet': concurrency 4 is only for style 'function' (a stream-style "
            "run(job) chooses itself what it does at once, e.g. with async def run)",
        ),
    ],
    ids=[
        "max_jobs-huge",
        "max_jobs-zero",
        "gpu-bool",
        "grace-string",
        "grace-nan",
        "grace-inf",
        "duplicate-key",
        "not-utf8",
        "deep",
        "typename-typo",
        "deterministic-string",
        "concurrency-zero",
        "concurrency-huge",
        "concurrency-string",
        "concurrency-fraction",
        "concurrency-bool",
        "concurrency-stream",
    ],
)
def test_a_malformed_progdef_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    folder = write(tmp_path, text)
    with pytest.raises(ProgdefInvalid) as caught:
        load_progdef(folder)
    assert len(caught.value.problems) == 1
    line = caught.value.problems[0]
    assert line.startswith(f"{folder / 'progdef.json'}: ")
    assert expected in line


def dagyo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_the_executor_and_the_scheduler_exit_2_with_one_line(tmp_path: Path) -> None:
    folder = write(tmp_path, greet_with("scaling", "max_jobs", 100_000_000))
    problem = f"{folder / 'progdef.json'}: scaling.max_jobs 100000000 is out of bounds"

    executor = dagyo("-m", "executor", str(folder))
    scheduler = dagyo(
        "-m", "scheduler.cli", "scheduler", "--progdefs", str(tmp_path), "--listen", "127.0.0.1:0"
    )
    validate = dagyo(
        "-m", "scheduler.cli", "validate", "--progdefs", str(tmp_path), "examples/hello.json"
    )

    for done in (executor, scheduler, validate):
        assert done.returncode == 2, done.stderr
        assert problem in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def program_importing(tmp_path: Path, code: str) -> Any:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "progdef.json").write_text(
        json.dumps({**GREET, "name": "odd", "run": "main:handler"})
    )
    (folder / "main.py").write_text(code)
    return load_progdef(folder)


def test_an_import_that_exits_is_a_clear_error(tmp_path: Path) -> None:
    progdef = program_importing(tmp_path, "import sys\nsys.exit(7)\n")
    with pytest.raises(DagyoError, match=r"progdef odd: importing 'main' .*called sys.exit\(7\)"):
        load_program(progdef)


def test_an_import_that_fails_names_the_module_and_the_error(tmp_path: Path) -> None:
    progdef = program_importing(tmp_path, "import no_such_module_anywhere\n")
    with pytest.raises(
        DagyoError, match=r"progdef odd: cannot import 'main' .*No module named"
    ) as caught:
        load_program(progdef)
    assert "Traceback" not in str(caught.value)


def test_an_import_that_hangs_is_bounded_and_names_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_IMPORT_TIMEOUT_S", "0.5")
    progdef = program_importing(tmp_path, "import time\ntime.sleep(3600)\n")
    with pytest.raises(
        DagyoError,
        match=r"progdef odd: importing .main. .* did not finish within 0.5 s.*DAGYO_IMPORT_TIMEOUT",
    ):
        load_program(progdef)


def test_an_import_timeout_that_is_not_a_number_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_IMPORT_TIMEOUT_S", "nan")
    progdef = program_importing(tmp_path, "def handler(ctx, item):\n    return item\n")
    with pytest.raises(DagyoError, match="DAGYO_IMPORT_TIMEOUT_S"):
        load_program(progdef)


def test_dagyo_run_of_a_progdef_whose_import_hangs_is_one_message(tmp_path: Path) -> None:
    program_importing(tmp_path, "import time\ntime.sleep(3600)\n")
    shutil.copytree(ROOT / "progdefs" / "void_sink", tmp_path / "void_sink")
    flow = tmp_path / "f.json"
    flow.write_text(
        json.dumps(
            {
                "name": "f",
                "nodes": {"x": {"progdef": "odd"}, "v": {"progdef": "void_sink"}},
                "edges": [{"from": "x.greeting", "to": "v.sink"}],
                "consts": [{"to": "x.name", "values": ["a"]}],
            }
        )
    )

    done = dagyo(
        "-m",
        "scheduler.cli",
        "run",
        "--progdefs",
        str(tmp_path),
        str(flow),
        env={"DAGYO_IMPORT_TIMEOUT_S": "0.5"},
    )

    assert done.returncode == 2  # a catalogue problem, found before the flow runs
    assert "importing 'main'" in done.stderr
    assert "did not finish within 0.5 s" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("scaling", "max_jobs", 100_000_000),
        ("resources", "gpu", True),
        (None, "concurrency", 0),
        (None, "concurrency", 1001),
    ],
)
def test_the_progdef_schema_states_the_same_bounds(
    section: str | None, key: str, value: Any
) -> None:
    from jsonschema import Draft202012Validator

    from scheduler.flow.parse import schema_path

    schema = json.loads(schema_path("progdef").read_text())
    validator = Draft202012Validator(schema)
    assert validator.is_valid(json.loads(json.dumps(GREET)))
    assert not validator.is_valid(json.loads(greet_with(section, key, value)))


def test_a_max_jobs_override_past_the_bound_is_one_line_exit_2() -> None:
    done = dagyo(
        "-m", "executor", str(ROOT / "progdefs" / "greet"), env={"DAGYO_MAX_JOBS": "100000000"}
    )

    assert done.returncode == 2, done.stderr
    assert "DAGYO_MAX_JOBS=100000000 is out of bounds: from 1 to 10000" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_naming_no_known_type_is_refused_at_load_with_did_you_mean() -> None:
    with pytest.raises(ProgdefInvalid) as caught:
        with_progdefs({"name": "odd", "inputs": {"x": "dagyo.types.Txt"}, "outputs": {}})

    assert caught.value.problems == [
        "progdef.json: input 'x': no message named 'dagyo.types.Txt' (did you mean "
        "'dagyo.types.Text'?): use a dagyo.types name, a well-known type such as "
        "google.protobuf.Timestamp, or define it in a .proto listed in protos"
    ]


def test_deterministic_defaults_to_false_and_is_read_from_progdef_json(tmp_path: Path) -> None:
    plain = {key: value for key, value in GREET.items() if key != "deterministic"}
    marked = {**plain, "deterministic": True}

    assert not load_progdef(write(tmp_path, json.dumps(plain), "plain")).deterministic
    assert load_progdef(write(tmp_path, json.dumps(marked), "marked")).deterministic


def test_the_samples_whose_outputs_depend_only_on_their_inputs_are_deterministic() -> None:
    catalogue = load_catalogue(ROOT / "progdefs")
    deterministic = {name for name, progdef in catalogue.items() if progdef.deterministic}

    assert {"source", "greet", "count", "parse_int", "distance", "void_sink"} <= deterministic
    assert not deterministic & {
        "slow",
        "explode",
        "assert",
        "ignore_errors",
        "log_errors",
        "unordered_cartesian_product",
    }


def test_concurrency_defaults_to_one_and_is_read_from_progdef_json(tmp_path: Path) -> None:
    many = {**GREET, "concurrency": 64}

    assert load_progdef(write(tmp_path, json.dumps(GREET), "plain")).concurrency == 1
    assert load_progdef(write(tmp_path, json.dumps(many), "many")).concurrency == 64
