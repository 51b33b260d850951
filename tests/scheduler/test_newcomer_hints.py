"""What a newcomer reads on a first wrong step: a trigger file given to `dagyo run`, an input
left for `--set`, counts in `validate`, `dagyo build --help` on a core install, and a progdef
with no Dockerfile in `dagyo build --print`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.commands import dagyo_bare, dagyo_without_kubernetes
from tests.conftest import EXAMPLES, PROGDEFS


def test_run_of_a_trigger_file_says_it_is_one_and_how_to_use_it() -> None:
    trigger = EXAMPLES / "triggers" / "on-upload.json"
    result = dagyo_bare("run", str(trigger))
    assert result.returncode == 2
    folder = trigger.parent
    assert result.stderr.splitlines() == [
        f"dagyo: {trigger}: this is a trigger file, not a flow: put it in the folder "
        f"DAGYO_TRIGGERS names (`DAGYO_TRIGGERS={folder} dagyo up`), or run the flow it "
        f"names: dagyo run {folder / 'greet-key.json'} --set hi.name=JSON"
    ]


def test_an_input_with_no_source_points_at_set() -> None:
    flow = EXAMPLES / "triggers" / "greet-key.json"
    result = dagyo_bare("run", str(flow))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"dagyo: {flow}: hi.name: input has no source: connect an edge to it or give it a "
        "const (in the flow, or at run time with --set hi.name=JSON)"
    ]
    given = dagyo_bare("run", str(flow), "--set", 'hi.name="Ada"')
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout) == {"export": "greetings", "value": {"text": "hello Ada"}}


def test_validate_counts_one_edge_in_the_singular(tmp_path: Path) -> None:
    flow = tmp_path / "one.json"
    flow.write_text(
        json.dumps(
            {
                "name": "one",
                "nodes": {"hi": {"progdef": "greet"}, "out": {"progdef": "void_sink"}},
                "edges": [{"from": "hi.greeting", "to": "out.sink"}],
                "consts": [{"to": "hi.name", "values": ["x"]}],
            }
        )
    )
    result = dagyo_bare("validate", str(flow))
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"{flow}: valid (2 nodes, 1 edge)\n"


def test_build_help_without_the_deploy_extra_prints_the_help(tmp_path: Path) -> None:
    for command in ("build", "deploy"):
        result = dagyo_without_kubernetes(tmp_path, command, "--help")
        assert result.returncode == 0, result.stderr
        assert f" {command} [OPTIONS]" in result.stdout.splitlines()[0], result.stdout
        assert "--progdefs" in result.stdout
        assert "pip install 'dagyo[deploy]'" in result.stdout


def test_build_print_says_a_progdef_without_a_dockerfile_gets_the_default(
    tmp_path: Path,
) -> None:
    catalogue = tmp_path / "catalogue"
    shutil.copytree(PROGDEFS / "greet", catalogue / "greet")
    (catalogue / "greet" / "Dockerfile").unlink()
    shutil.copytree(PROGDEFS / "count", catalogue / "count")
    result = dagyo_bare("build", "--print", "--base-image", "b:1", "--progdefs", str(catalogue))
    assert result.returncode == 0, result.stderr
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert "dockerfile=Dockerfile" in lines["dagyo-count"]
    assert "dockerfile=(default: the progdef has no Dockerfile)" in lines["dagyo-greet"]
    missing = catalogue / "greet" / "progdef.json"
    document = json.loads(missing.read_text())
    document["image"] = {"dockerfile": "Dockerfile.gpu"}
    missing.write_text(json.dumps(document))
    result = dagyo_bare("build", "--print", "--base-image", "b:1", "--progdefs", str(catalogue))
    assert result.returncode == 2
    assert result.stderr == (
        f"dagyo: progdef greet: its image.dockerfile 'Dockerfile.gpu' is not in "
        f"{catalogue / 'greet'}: write it, or leave image.dockerfile out for the default\n"
    )
