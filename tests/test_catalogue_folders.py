"""Several folders make one catalogue: `--progdefs` repeated, or DAGYO_PROGDEFS joined by
os.pathsep; a name defined in two folders is an error naming both; a catalogue without the
samples' sinks and error handlers says how to add them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.commands import run_dagyo
from tests.conftest import PROGDEFS
from tests.embedded import TEXT, make_progdef

SHOUT = """
from executor.types import Text

def handler(ctx, item):
    return Text(text=item.text.upper())
"""
FLOW = {
    "name": "shouting",
    "nodes": {
        "names": {"progdef": "source"},
        "up": {"progdef": "shout"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [{"from": "names.src", "to": "up.text"}, {"from": "up.loud", "to": "out.sink"}],
    "consts": [{"to": "names.count", "values": [2]}],
    "exports": {"loud": "up.loud"},
}


def own_folder(tmp_path: Path) -> tuple[Path, Path]:
    mine = tmp_path / "mine"
    mine.mkdir()
    make_progdef(
        mine,
        "shout",
        SHOUT,
        inputs={"text": TEXT},
        outputs={"loud": TEXT},
        run="main:handler",
        style="function",
    )
    flow = tmp_path / "shouting.json"
    flow.write_text(json.dumps(FLOW))
    return mine, flow


def test_progdefs_repeated_or_joined_make_one_catalogue(tmp_path: Path) -> None:
    mine, flow = own_folder(tmp_path)
    expected = [{"export": "loud", "value": {"text": f"NAME-{i}"}} for i in range(2)]
    given = run_dagyo("run", str(flow), "--progdefs", str(mine), "--progdefs", str(PROGDEFS))
    assert given.returncode == 0, given.stderr
    assert [json.loads(line) for line in given.stdout.splitlines()] == expected
    joined = run_dagyo(
        "run", str(flow), env={"DAGYO_PROGDEFS": os.pathsep.join([str(mine), str(PROGDEFS)])}
    )
    assert joined.returncode == 0, joined.stderr
    assert [json.loads(line) for line in joined.stdout.splitlines()] == expected


def test_a_progdef_name_in_two_folders_is_an_error_naming_both(tmp_path: Path) -> None:
    mine, flow = own_folder(tmp_path)
    shutil.copytree(PROGDEFS / "greet", mine / "greet")
    done = run_dagyo("validate", str(flow), "--progdefs", str(mine), "--progdefs", str(PROGDEFS))
    assert done.returncode == 2
    assert done.stderr == (
        f"dagyo: {PROGDEFS / 'greet' / 'progdef.json'}: progdef name 'greet' is already used "
        f"by {mine / 'greet'}: give one of them another name, or leave one folder out of "
        "--progdefs\n"
    )


def test_a_catalogue_without_the_samples_says_how_to_add_a_void_sink(tmp_path: Path) -> None:
    mine, _ = own_folder(tmp_path)
    flow = tmp_path / "alone.json"
    flow.write_text(
        json.dumps(
            {
                "name": "alone",
                "nodes": {"up": {"progdef": "shout"}},
                "consts": [{"to": "up.text", "values": ["x"]}],
            }
        )
    )
    done = run_dagyo("validate", str(flow), "--progdefs", str(mine))
    assert done.returncode == 2
    assert done.stderr == (
        f"dagyo: {flow}: up.loud: output goes nowhere: export it, or connect it to a "
        "void_sink (this catalogue has none: the sample catalogue's sinks and error handlers "
        f"come with it as one more folder, --progdefs {mine} --progdefs {PROGDEFS})\n"
    )


def test_the_scheduler_loads_every_folder_and_again_when_one_changes(tmp_path: Path) -> None:
    from scheduler.service.catalogue import CatalogueCache
    from scheduler.service.config import SchedulerSettings

    mine, _ = own_folder(tmp_path)
    samples = tmp_path / "samples"
    shutil.copytree(PROGDEFS / "greet", samples / "greet", ignore=shutil.ignore_patterns("__*"))
    joined = os.pathsep.join([str(mine), str(samples)])
    settings = SchedulerSettings.from_env({"DAGYO_PROGDEFS": joined})
    assert settings.progdefs == (mine, samples)
    catalogue = CatalogueCache(settings.progdefs)
    assert sorted(catalogue()) == ["greet", "shout"]
    shutil.copytree(PROGDEFS / "count", samples / "count", ignore=shutil.ignore_patterns("__*"))
    assert sorted(catalogue()) == ["count", "greet", "shout"]
