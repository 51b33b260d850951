"""progdef.json's ``"runtime": "node"``: how a node progdef's ``run`` is checked where the
catalogue loads it, and what `dagyo run`, `dagyo invoke --local` and `dagyo up` say of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import DagyoError, ProgdefInvalid
from executor.core.progdef import load_progdef
from scheduler import local_processes
from scheduler.local_processes import check_node_runtime, executor_command
from tests.commands import dagyo_bare
from tests.conftest import EXAMPLES, PROGDEFS


def write_progdef(folder: Path, code: str | None = None, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "name": "shout",
        "runtime": "node",
        "inputs": {"text": "dagyo.types.Text"},
        "outputs": {"upper": "dagyo.types.Text"},
        "run": "main.js:handler",
        "style": "function",
        **fields,
    }
    (folder / "progdef.json").write_text(json.dumps(data))
    if code is not None:
        (folder / "main.js").write_text(code)
    return folder / "progdef.json"


def test_a_node_progdef_loads_with_its_runtime_and_python_is_the_default(tmp_path: Path) -> None:
    code = "export async function handler(ctx, item) { return item; }\n"
    assert load_progdef(write_progdef(tmp_path / "a", code)).runtime == "node"
    assert load_progdef(PROGDEFS / "greet" / "progdef.json").runtime == "python"
    assert load_progdef(PROGDEFS / "upper" / "progdef.json").runtime == "node"


@pytest.mark.parametrize(
    "code",
    [
        "const handler = (ctx, item) => item;\nexport { handler };\n",
        "function shout(ctx, item) { return item; }\nexport { shout as handler };\n",
        "export const handler = (ctx, item) => item;\n",
        "export async function handler(ctx: Context, item: Text): Promise<Text> {}\n",
    ],
)
def test_every_form_of_export_counts(tmp_path: Path, code: str) -> None:
    load_progdef(write_progdef(tmp_path / "a", code))


@pytest.mark.parametrize(
    ("fields", "code", "problem"),
    [
        ({}, "export function handle(ctx, item) {}\n", "main.js does not export handler"),
        ({}, "function handler(ctx, item) {}\n", "main.js does not export handler"),
        ({"run": "other.js:handler"}, "export function handler() {}\n", "no file other.js"),
        ({"run": "main:handler"}, "export function handler() {}\n", "must be 'FILE:EXPORT'"),
        ({"run": "../main.js:handler"}, "", "must be 'FILE:EXPORT'"),
        ({"runtime": "ruby"}, "", "runtime 'ruby' must be one of python, node"),
    ],
)
def test_a_node_progdef_whose_run_names_no_export_is_refused_naming_it(
    tmp_path: Path, fields: dict[str, Any], code: str, problem: str
) -> None:
    with pytest.raises(ProgdefInvalid, match=problem):
        load_progdef(write_progdef(tmp_path / "a", code, **fields))


def test_a_catalogue_without_the_code_loads_as_the_schedulers_does(tmp_path: Path) -> None:
    assert load_progdef(write_progdef(tmp_path / "a")).run == "main.js:handler"


def test_the_version_covers_the_runtime(tmp_path: Path) -> None:
    code = "export function handler(ctx, item) { return item; }\n"
    node = load_progdef(write_progdef(tmp_path / "a", code))
    raw = {k: v for k, v in json.loads((tmp_path / "a" / "progdef.json").read_text()).items()}
    raw["runtime"] = "python"
    raw["run"] = "main:handler"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "main.js").write_text(code)
    (tmp_path / "b" / "progdef.json").write_text(json.dumps(raw))
    assert node.version != load_progdef(tmp_path / "b" / "progdef.json").version


def test_a_node_progdef_runs_on_the_node_executor() -> None:
    command = executor_command(load_progdef(PROGDEFS / "upper" / "progdef.json"))
    assert command[1].endswith("sdks/js/bin/dagyo-executor.js")
    assert Path(command[0]).name == "node" and command[2].endswith("progdefs/upper")


def test_dagyo_run_refuses_a_flow_with_a_node_progdef_in_one_line() -> None:
    result = dagyo_bare("run", str(EXAMPLES / "mixed.json"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "dagyo: progdef upper runs on Node.js, which `dagyo run` (one Python process) cannot "
        "run: start a local cluster with `dagyo up` and run it with "
        "`dagyo flow submit FLOW --wait`"
    ]


def test_invoke_local_refuses_a_node_progdef_too() -> None:
    result = dagyo_bare("invoke", "upper", "--input", 'text={"text": "a"}', "--local")
    assert result.returncode == 2
    assert "progdef upper runs on Node.js" in result.stderr and "dagyo up" in result.stderr


def test_dagyo_up_says_what_to_run_without_node_or_the_sdks_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upper = load_progdef(PROGDEFS / "upper" / "progdef.json")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DagyoError, match=r"^progdef upper runs on Node.js, which is not on PATH"):
        check_node_runtime([upper])
    monkeypatch.undo()
    monkeypatch.setattr(local_processes, "node_sdk", lambda: tmp_path)
    with pytest.raises(DagyoError, match=r"its SDK is not installed: run `npm ci` in "):
        check_node_runtime([upper])
