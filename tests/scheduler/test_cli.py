"""`dagyo validate`, `run`, `progdefs` and `types`: output and exit status, as a user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.commands import dagyo_bare
from tests.conftest import EXAMPLES, ROOT


def test_run_prints_each_export_as_a_json_line_and_exits_0() -> None:
    result = dagyo_bare("run", str(EXAMPLES / "hello.json"))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"export": "greetings", "value": {"text": f"hello name-{i}"}} for i in range(3)
    ]
    assert result.stderr == ""  # no progress line when stderr is not a terminal


def test_run_of_a_panicking_flow_exits_1_with_the_report() -> None:
    result = dagyo_bare("run", str(EXAMPLES / "boom.json"))
    assert result.returncode == 1
    assert result.stdout == ""
    first, *trace = result.stderr.splitlines()
    assert first == (
        "dagyo: flow failed: node fuse (progdef explode) on executor embedded: "
        "RuntimeError: explode: item 'panic, as asked' starts with 'panic'"
    )
    assert trace[0] == "Traceback (most recent call last):"
    assert "progdefs/explode/main.py" in trace[1]


def test_the_empty_flow_exits_0_with_no_output(tmp_path: Path) -> None:
    flow = tmp_path / "empty.json"
    flow.write_text('{"name": "empty"}')
    result = dagyo_bare("run", str(flow))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_an_invalid_flow_exits_2_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    flow = tmp_path / "bad.json"
    flow.write_text(
        json.dumps(
            {
                "name": "bad",
                "nodes": {"names": {"progdef": "source"}, "hi": {"progdef": "greet"}},
                "edges": [{"from": "names.src", "to": "hi.nmae"}],
                "consts": [{"to": "names.count", "values": ["three"]}],
            }
        )
    )
    for command in ("validate", "run"):
        result = dagyo_bare(command, str(flow))
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert (
            f"dagyo: {flow}: edge names.src -> hi.nmae: hi.nmae: no such input on progdef "
            "greet (did you mean 'name'?)" in lines
        )
        assert any(
            line.startswith(f'dagyo: {flow}: const to names.count: value 1 ("three")')
            for line in lines
        )
        assert "Traceback" not in result.stderr


def test_malformed_json_names_the_line_and_column(tmp_path: Path) -> None:
    flow = tmp_path / "broken.json"
    flow.write_text('{"name": "x",\n "nodes": {]\n}')
    result = dagyo_bare("validate", str(flow))
    assert result.returncode == 2
    assert result.stderr.startswith(f"dagyo: {flow}:2:12: malformed JSON: ")


def test_a_missing_flow_file_exits_2_naming_it(tmp_path: Path) -> None:
    result = dagyo_bare("run", str(tmp_path / "nowhere.json"))
    assert result.returncode == 2
    assert "nowhere.json" in result.stderr and "Traceback" not in result.stderr


def test_validate_says_valid_and_exits_0() -> None:
    result = dagyo_bare("validate", str(EXAMPLES / "hello.json"))
    assert result.returncode == 0
    assert "valid (3 nodes, 2 edges)" in result.stderr


def test_graph_prints_mermaid_or_dot_instead_of_running() -> None:
    mermaid = dagyo_bare("run", str(EXAMPLES / "hello.json"), "--graph", "mermaid")
    assert mermaid.returncode == 0
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert '-->|"src → name: dagyo.types.Text"| node_hi' in mermaid.stdout
    dot = dagyo_bare("run", str(EXAMPLES / "hello.json"), "--graph", "dot")
    assert dot.stdout.startswith('digraph "hello" {')
    assert 'node_names -> node_hi [label="src → name: dagyo.types.Text"];' in dot.stdout


def test_progdefs_and_types_list_the_catalogue_and_the_stream_types() -> None:
    progdefs = dagyo_bare("progdefs")
    assert progdefs.returncode == 0
    assert "greet  (name: dagyo.types.Text) -> (greeting: dagyo.types.Text)" in progdefs.stdout
    assert "void_sink  (sink: T) -> ()" in progdefs.stdout
    types = dagyo_bare("types")
    assert "dagyo.types.TextPair  {a: string, b: string}" in types.stdout.splitlines()


def test_types_suggests_the_full_name_of_a_short_one() -> None:
    done = dagyo_bare("types", "Text")
    assert done.returncode == 2
    assert "no message named 'Text' (did you mean 'dagyo.types.Text'?)" in done.stderr, done.stderr


def test_types_says_a_well_known_type_is_well_known_and_wraps_its_docs() -> None:
    done = dagyo_bare("types", "google.protobuf.Timestamp")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "    defined in google/protobuf/timestamp.proto (well-known)" in lines, done.stdout
    assert "progdef" not in done.stdout
    assert max(len(line) for line in lines) <= 100, done.stdout
    # Its doc comment's paragraphs stay paragraphs, each wrapped under the heading.
    assert "    # Examples" in lines, done.stdout
    assert "" in lines[1:], done.stdout


def test_the_installed_sample_catalogue_is_used_outside_a_checkout(tmp_path: Path) -> None:
    result = dagyo_bare("run", str(EXAMPLES / "hello.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_a_malformed_progdef_exits_2_naming_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "progdefs" / "oops"
    bad.mkdir(parents=True)
    (bad / "progdef.json").write_text(
        '{"name": "oops", "inputs": {}, "outputs": {}, "run": "main:run", "scalling": {}}'
    )
    result = dagyo_bare(
        "run", str(EXAMPLES / "hello.json"), "--progdefs", str(tmp_path / "progdefs")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"dagyo: {bad / 'progdef.json'}: unknown key 'scalling' (did you mean 'scaling'?)"
    )


def test_run_draws_a_progress_line_when_stderr_is_a_terminal() -> None:

    import pty

    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from scheduler.cli import main; main()",
                "run",
                str(EXAMPLES / "count.json"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
            env={
                "PATH": "",
                "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
                "PYTHONPATH": str(ROOT),
            },
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"export": "total", "value": {"value": "100000"}}
    assert b"count: names.src " in drawn, drawn
    assert drawn.endswith(b"\x1b[2K")  # the line is wiped at the end
