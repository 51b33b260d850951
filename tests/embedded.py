"""Running flows in this process for tests, and progdefs a test writes."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from executor._runtime.stream import StreamSettings
from executor.core.progdef import load_catalogue
from scheduler.embedded import EmbeddedRunner, RunResult
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.conftest import PROGDEFS

# The sample catalogue, loaded once for every test that runs its flows.
CATALOGUE = load_catalogue(PROGDEFS)


def run_flow(
    flow: dict[str, Any],
    *,
    catalogue: Any = None,
    settings: StreamSettings | None = None,
    serialize: bool = False,
) -> tuple[dict[str, list[Any]], RunResult]:
    """Run a flow embedded; return its exports (JSON form, by name) and its result."""
    checked = check_flow(parse_flow(json.dumps(flow)), catalogue or CATALOGUE)
    exports: dict[str, list[Any]] = defaultdict(list)

    def on_export(name: str, message: Any) -> None:
        exports[name].append(json_format.MessageToDict(message))

    runner = EmbeddedRunner(checked, on_export=on_export, settings=settings, serialize=serialize)
    result = runner.run()
    return dict(exports), result


def source(count: int | list[int]) -> dict[str, Any]:
    """A const for a source's ``count``: one value, or several."""
    counts = count if isinstance(count, list) else [count]
    return {"values": [{"value": c} for c in counts]}


def make_progdef(root: Path, name: str, code: str, **fields: Any) -> None:
    """Write a progdef folder: progdef.json from ``fields`` and ``code`` as main.py."""
    folder = root / name
    folder.mkdir()
    (folder / "progdef.json").write_text(json.dumps({"name": name, **fields}))
    (folder / "main.py").write_text(textwrap.dedent(code))


def catalogue_with(root: Path) -> dict[str, Any]:
    """The sample catalogue with the progdefs of ``root`` added."""
    return {**load_catalogue(PROGDEFS), **load_catalogue(root)}


# The typename of the sample catalogue's text items.
TEXT = "dagyo.types.Text"


def proto_progdef(
    folder: Path, protos: dict[str, str], port: str, listed: list[str] | None = None
) -> Path:
    """Write a progdef taking ``points`` of type ``port``, with ``protos`` (name -> text)."""
    folder.mkdir(parents=True)
    for name, text in protos.items():
        (folder / name).write_text(text)
    document = {
        "name": folder.name,
        "inputs": {"points": port},
        "outputs": {},
        "run": "main:run",
        "protos": list(protos) if listed is None else listed,
    }
    (folder / "progdef.json").write_text(json.dumps(document))
    return folder


def package() -> str:
    """A package name of its own: the registry is one per process."""
    return f"t{uuid.uuid4().hex[:8]}"
