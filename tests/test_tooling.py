"""The repository's own checks: generated code is fresh, lint and types are clean."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_generated_protobuf_code_is_fresh() -> None:
    result = run(sys.executable, "proto/generate.py", "--check")
    assert result.returncode == 0, result.stderr


def test_ruff_finds_nothing() -> None:
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_finds_nothing_in_scheduler_and_executor() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_sample_progdef_loads_and_has_code() -> None:
    from executor._runtime.program import load_program
    from executor.core.progdef import load_catalogue

    catalogue = load_catalogue(ROOT / "progdefs")
    assert set(catalogue) == {
        "source",
        "greet",
        "void_sink",
        "count",
        "unordered_cartesian_product",
        "explode",
        "fetch_like",
        "slow",
        "parse_int",
        "assert",
        "ignore_errors",
        "log_errors",
        "distance",
        "upper",
    }
    for progdef in catalogue.values():
        if progdef.runtime == "python":  # node ones: tests/executor/test_node_progdefs.py
            assert callable(load_program(progdef).run)


def _imports(package_roots: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at the top, in functions, or for typing)."""
    import ast

    modules = {}
    for root in package_roots:
        for path in (ROOT / root).rglob("*.py"):
            if "pb" in path.relative_to(ROOT).parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[name] |= {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycle_among_the_projects_modules() -> None:
    graph = _imports(("scheduler", "executor"))
    cycles = []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    for module, imported in graph.items():
        for other in imported:
            # a package may import its own modules (its __init__ re-exports them)
            if module.startswith(other + ".") or other.startswith(module + "."):
                continue
            if reaches(other, module, set()):
                cycles.append(f"{module} -> {other}")
    assert cycles == []


MAX_MODULE_LINES = 400


def test_no_hand_written_module_of_scheduler_or_executor_passes_400_lines() -> None:
    # The generated protobuf code (pb/) is not written by hand and does not count.
    too_long = []
    for package in ("scheduler", "executor"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "pb" in path.relative_to(ROOT).parts:
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert too_long == []


def test_the_executor_imports_no_scheduler_code() -> None:
    graph = _imports(("scheduler", "executor"))
    leaks = {
        f"{module} -> {other}"
        for module, imported in graph.items()
        if module.startswith("executor")
        for other in imported
        if other.startswith("scheduler")
    }
    assert leaks == set()


def test_no_test_module_imports_another() -> None:
    # What tests share lives in helper modules (tests/cluster.py, tests/commands.py, …),
    # so a test module can be moved or deleted without breaking another.
    graph = _imports(("tests",))
    imports = {
        f"{module} -> {other}"
        for module, imported in graph.items()
        for other in imported
        if other.rpartition(".")[2].startswith("test_")
    }
    assert imports == set()


# Libraries `dagyo run` has no use for: each costs milliseconds to tens of them to import,
# and the whole command should take a fraction of a second.
NOT_IMPORTED_BY_RUN = (
    "cloudevents",
    "docker",
    "grpc",
    "jsonschema",
    "kubernetes",
    "pika",
    "prometheus_client",
    "rich",
    "yaml",
)

# Runs `dagyo run` and, at its exit, prints the top-level modules it had imported.
RUN_AND_LIST_MODULES = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
from scheduler.cli import main
main()
"""


def test_dagyo_run_imports_no_library_it_does_not_use() -> None:
    result = run(sys.executable, "-c", RUN_AND_LIST_MODULES, "run", "examples/hello.json")
    assert result.returncode == 0, result.stderr
    *exports, modules = result.stdout.splitlines()
    assert len(exports) == 3
    assert sorted(set(json.loads(modules)) & set(NOT_IMPORTED_BY_RUN)) == []


# Modules of executor/ that nothing in executor/ imports, yet belong there: the package's
# entries (the executor process, the author's imports, the embedded runner's one door).
EXECUTOR_ENTRIES = {
    "executor",
    "executor.__main__",
    "executor.errorport",
    "executor.inprocess",
    "executor.sdk",
    "executor.types",
}


def test_a_progdef_images_executor_holds_no_module_only_the_scheduler_uses() -> None:
    graph = _imports(("executor",))
    reached, todo = set(), list(EXECUTOR_ENTRIES)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    # A package is loaded with any module of it.
    reached |= {module.rpartition(".")[0] for module in reached}
    assert sorted(set(graph) - reached) == []
    # The generated code: each module is the executor's own wire (none is the scheduler's).
    sources = "\n".join(
        path.read_text()
        for path in (ROOT / "executor").rglob("*.py")
        if "pb" not in path.relative_to(ROOT).parts
    )
    generated = sorted(path.stem for path in (ROOT / "executor" / "pb").rglob("*_pb2*.py"))
    assert [stem for stem in generated if stem not in sources] == []


# Imports the author's facade in a fresh interpreter and prints the modules it loaded.
IMPORT_THE_FACADE = """
import json, sys
import executor, executor.errorport, executor.inputs, executor.sdk, executor.types
from executor import Context, DecodeError, InputStream, Job, OutputStream, Stopped
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_sdk_facade_loads_no_runtime_and_no_transport() -> None:
    result = run(sys.executable, "-c", IMPORT_THE_FACADE)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert [m for m in loaded if m.startswith(("executor._runtime", "pika"))] == []


def test_no_executor_module_reaches_into_another_modules_private_attribute() -> None:
    import ast

    reaches = []
    for path in sorted((ROOT / "executor").rglob("*.py")):
        if "pb" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        own = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr not in own
            ):
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert reaches == []
