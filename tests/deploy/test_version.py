"""A progdef's version: a content hash of progdef.json and its build context."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor.core.constants import mailbox_name
from executor.core.progdef import load_catalogue, load_progdef
from executor.core.version import context_files
from scheduler.deploy import DeploySettings, plan_images, render_catalogue
from tests.deploy import PROGDEFS, ROOT, SAMPLE_PROGDEFS, copy_catalogue


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)


@pytest.fixture
def greet(tmp_path: Path) -> Path:
    """A copy of the greet progdef's folder, to change."""
    return copy_catalogue(tmp_path, ("greet",)) / "greet"


def _version(folder: Path) -> str:
    return load_progdef(folder).version


def test_the_version_is_the_same_in_another_process() -> None:
    here = {name: progdef.version for name, progdef in load_catalogue(PROGDEFS).items()}
    code = (
        "import json; from executor.core.progdef import load_catalogue; "
        "print(json.dumps({n: p.version for n, p in load_catalogue('progdefs').items()}))"
    )
    env = {
        "PATH": "",
        "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
        "PYTHONPATH": str(ROOT),
        "PYTHONHASHSEED": "123",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == here
    assert set(here) == set(SAMPLE_PROGDEFS)
    assert len(set(here.values())) == len(here), "each progdef has its own version"


def test_the_version_does_not_depend_on_where_the_folder_is(tmp_path: Path) -> None:
    copy = copy_catalogue(tmp_path, ("greet",)) / "greet"
    assert _version(copy) == _version(PROGDEFS / "greet")


def test_changing_progdef_json_changes_the_version(greet: Path) -> None:
    before = _version(greet)
    data = json.loads((greet / "progdef.json").read_text())
    data["scaling"]["max_executors"] += 1
    (greet / "progdef.json").write_text(json.dumps(data, indent=2))
    assert _version(greet) != before


def test_reformatting_progdef_json_changes_the_version_too(greet: Path) -> None:
    # progdef.json is a file of the build context as well: any byte of it counts.
    before = _version(greet)
    data = json.loads((greet / "progdef.json").read_text())
    (greet / "progdef.json").write_text(json.dumps(data))
    assert _version(greet) != before


@pytest.mark.parametrize("change", ["edit", "add", "add_nested", "remove", "rename"])
def test_changing_any_file_of_the_context_changes_the_version(greet: Path, change: str) -> None:
    before = _version(greet)
    if change == "edit":
        (greet / "Dockerfile").write_text((greet / "Dockerfile").read_text() + "# more\n")
    elif change == "add":
        (greet / "data.txt").write_text("x")
    elif change == "add_nested":
        (greet / "lib").mkdir()
        (greet / "lib" / "helpers.py").write_text("")
    elif change == "remove":
        (greet / "Dockerfile").unlink()
    else:
        (greet / "Dockerfile").rename(greet / "Dockerfile.old")
    assert _version(greet) != before


def test_dockerignored_and_cache_files_do_not_change_the_version(greet: Path) -> None:
    before = _version(greet)
    (greet / "__pycache__").mkdir()
    (greet / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (greet / "lib").mkdir()
    (greet / "lib" / "__pycache__").mkdir()
    (greet / "lib" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (greet / "stray.pyc").write_bytes(b"\0")
    (greet / ".pytest_cache").mkdir()
    (greet / ".pytest_cache" / "README.md").write_text("cache")
    assert _version(greet) == before


def test_only_dockerignored_files_are_left_out(greet: Path) -> None:
    (greet / ".dockerignore").write_text(
        "# comment\n*.log\nscratch/\n!scratch/keep.txt\n**/*.tmp\n/notes.md\n"
    )
    before = _version(greet)
    (greet / "run.log").write_text("ignored")
    (greet / "scratch").mkdir()
    (greet / "scratch" / "big.bin").write_bytes(b"\1" * 1000)
    (greet / "deep").mkdir()
    (greet / "deep" / "x.tmp").write_text("ignored")
    (greet / "notes.md").write_text("ignored")
    assert _version(greet) == before
    files = {relative for relative, _ in context_files(greet)}
    assert "run.log" not in files and "scratch/big.bin" not in files
    # *.log matches at the context root only, as Docker matches it.
    (greet / "deep" / "nested.log").write_text("kept")
    assert _version(greet) != before
    before = _version(greet)
    (greet / "scratch" / "keep.txt").write_text("an exception to scratch/")
    assert _version(greet) != before


def test_a_baked_version_wins_over_the_hash(greet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGYO_PROGDEF_VERSION", "baked0123456789a")
    assert _version(greet) == "baked0123456789a"
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION")
    (greet / "VERSION").write_text("file0123456789ab\n")
    assert _version(greet) == "file0123456789ab"


def test_scheduler_executor_build_and_deploy_agree_on_each_mailbox() -> None:
    catalogue = load_catalogue(PROGDEFS)
    objects = render_catalogue(catalogue, DeploySettings(allow_tags=True))
    plan = {image.progdef: image for image in plan_images(catalogue) if image.progdef}
    (config_map,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    for name, progdef in catalogue.items():
        (deployment,) = [
            obj
            for obj in objects
            if obj["kind"] == "Deployment"
            and obj["metadata"]["labels"].get("dagyo.io/progdef") == name
        ]
        env = {
            var["name"]: var.get("value")
            for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        # What the executor pulls: DAGYO_JOBS as deployed.
        assert env["DAGYO_JOBS"] == progdef.mailbox
        # What the image bakes in, and what the scheduler reads from the mounted catalogue.
        version = plan[name].buildargs["DAGYO_PROGDEF_VERSION"]
        assert plan[name].tag.endswith(f":{version}")
        assert config_map["data"][f"{name}.VERSION"] == version == env["DAGYO_PROGDEF_VERSION"]
        assert mailbox_name(name, version) == progdef.mailbox


def test_the_mounted_catalogue_gives_the_scheduler_the_same_mailboxes(tmp_path: Path) -> None:
    catalogue = load_catalogue(PROGDEFS)
    (config_map,) = [
        obj
        for obj in render_catalogue(catalogue, DeploySettings(allow_tags=True))
        if obj["kind"] == "ConfigMap"
    ]
    # Lay the ConfigMap out as the kubelet does with the scheduler's volume items.
    for key, value in config_map["data"].items():
        name, _, leaf = key.partition(".")
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / leaf).write_text(value)
    for key, value in config_map.get("binaryData", {}).items():
        name, _, leaf = key.partition(".")
        (tmp_path / name / leaf).write_bytes(base64.b64decode(value))
    mounted = load_catalogue(tmp_path)
    assert {name: p.mailbox for name, p in mounted.items()} == {
        name: p.mailbox for name, p in catalogue.items()
    }


def test_dockerignore_patterns_are_cleaned_as_docker_cleans_them(greet: Path) -> None:
    (greet / ".dockerignore").write_text("./scratch/\n/notes.md\n!  scratch/keep.txt\n")
    before = _version(greet)
    (greet / "scratch").mkdir()
    (greet / "scratch" / "big.bin").write_bytes(b"\1")
    (greet / "notes.md").write_text("ignored")
    assert _version(greet) == before
    (greet / "scratch" / "keep.txt").write_text("kept")
    assert _version(greet) != before


def test_a_dockerfile_outside_the_context_still_counts(tmp_path: Path) -> None:
    catalogue = copy_catalogue(tmp_path, ("greet",))
    greet = catalogue / "greet"
    (greet / "image").mkdir()
    (greet / "main.py").rename(greet / "image" / "main.py")
    data = json.loads((greet / "progdef.json").read_text())
    data["image"] = {"dockerfile": "Dockerfile", "context": "image"}
    (greet / "progdef.json").write_text(json.dumps(data))
    before = _version(greet)
    (greet / "Dockerfile").write_text((greet / "Dockerfile").read_text() + "# changed\n")
    assert _version(greet) != before
    (image,) = [i for i in plan_images(load_catalogue(catalogue), ["greet"], base_image="b:1")]
    assert image.dockerfile == str((greet / "Dockerfile").resolve())
    assert image.context == (greet / "image").resolve()
