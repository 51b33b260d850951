"""Items inside one process: frames carry the messages sent, and DAGYO_EMBEDDED_SERIALIZE=1
serializes every item as a cluster does and catches an item changed after it was sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor._runtime.stream import StreamSettings
from executor.core.errors import DagyoError
from executor.core.progdef import load_catalogue
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.conftest import EXAMPLES, PROGDEFS, ROOT
from tests.embedded import make_progdef, source

TEXT = "dagyo.types.Text"
BYTES = "dagyo.types.Bytes"

# A stream-style progdef that keeps every message it sends (so none is freed and its id
# reused) and writes each message's id into it.
KEEPER = """
from executor.core.types import Text

KEPT = []

def run(job):
    for count in job.inputs["count"]:
        for _ in range(count.value):
            item = Text()
            item.text = str(id(item))
            KEPT.append(item)
            job.outputs["kept"].send(item)
"""

# Sends one message object again and again, changing it between sends.
REUSER = """
from executor.core.types import Text

def run(job):
    item = Text()
    for count in job.inputs["count"]:
        for i in range(count.value):
            item.text = f"name-{i}"
            job.outputs["names"].send(item)
"""

# A function-style handler that changes the item it received and returns it.
UPPER_IN_PLACE = """
def handler(ctx, item):
    item.text = item.text.upper()
    return item
"""

# Sends items of the given size in bytes, as many as its const says.
BLOBS = """
from executor.core.types import Bytes

def run(job):
    for count in job.inputs["count"]:
        job.outputs["blobs"].send_all(Bytes(data=bytes(40_000)) for _ in range(count.value))
"""


def catalogue(tmp_path: Path) -> dict[str, Any]:
    make_progdef(
        tmp_path,
        "keeper",
        KEEPER,
        inputs={"count": "dagyo.types.Int64"},
        outputs={"kept": TEXT},
        run="main:run",
    )
    make_progdef(
        tmp_path,
        "reuser",
        REUSER,
        inputs={"count": "dagyo.types.Int64"},
        outputs={"names": TEXT},
        run="main:run",
    )
    make_progdef(
        tmp_path,
        "upper_in_place",
        UPPER_IN_PLACE,
        inputs={"items": TEXT},
        outputs={"items": TEXT},
        run="main:handler",
        style="function",
    )
    make_progdef(
        tmp_path,
        "blobs",
        BLOBS,
        inputs={"count": "dagyo.types.Int64"},
        outputs={"blobs": BYTES},
        run="main:run",
    )
    return {**load_catalogue(PROGDEFS), **load_catalogue(tmp_path)}


def runner(
    flow: dict[str, Any], catalogue: dict[str, Any], **options: Any
) -> tuple[EmbeddedRunner, list[Any]]:
    exported: list[Any] = []
    checked = check_flow(parse_flow(json.dumps(flow)), catalogue)
    return EmbeddedRunner(checked, on_export=lambda _, m: exported.append(m), **options), exported


def one(progdef: str, port: str, count: int, *, then: str = "", then_port: str = "items") -> Any:
    nodes = {"a": {"progdef": progdef}}
    edges = []
    export = f"a.{port}"
    if then:
        nodes["b"] = {"progdef": then}
        edges.append({"from": f"a.{port}", "to": f"b.{then_port}"})
        export = f"b.{then_port}"
    return {
        "name": "items",
        "nodes": nodes,
        "edges": edges,
        "consts": [{"to": "a.count", **source(count)}],
        "exports": {"out": export},
    }


def test_an_item_crosses_an_in_process_edge_as_the_message_that_was_sent(
    tmp_path: Path,
) -> None:
    run, exported = runner(one("keeper", "kept", 3), catalogue(tmp_path), serialize=False)
    result = run.run()
    assert result.state == "succeeded", result.failure
    assert [str(id(item)) for item in exported] == [item.text for item in exported]


def test_with_serialize_every_item_is_a_copy_parsed_from_its_bytes(tmp_path: Path) -> None:
    run, exported = runner(one("keeper", "kept", 3), catalogue(tmp_path), serialize=True)
    result = run.run()
    assert result.state == "succeeded", result.failure
    assert len(exported) == 3
    assert all(str(id(item)) != item.text for item in exported)


def test_dagyo_embedded_serialize_1_turns_serializing_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_EMBEDDED_SERIALIZE", "1")
    run, exported = runner(one("keeper", "kept", 2), catalogue(tmp_path))
    assert run.run().state == "succeeded"
    assert all(str(id(item)) != item.text for item in exported)


def test_a_bad_dagyo_embedded_serialize_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGYO_EMBEDDED_SERIALIZE", "yes")
    with pytest.raises(DagyoError, match=r"DAGYO_EMBEDDED_SERIALIZE='yes'.*set it to 1 or 0"):
        runner(one("keeper", "kept", 2), catalogue(tmp_path))


def test_serialize_catches_an_item_changed_after_it_was_sent(tmp_path: Path) -> None:
    run, _ = runner(one("reuser", "names", 5, then="explode"), catalogue(tmp_path), serialize=True)
    result = run.run()
    assert result.state == "failed"
    assert result.failure is not None
    assert "a.names changed item 0 of frame 0 after sending it" in result.failure.error
    assert "build a new message for each send" in result.failure.error


def test_serialize_catches_a_handler_that_changes_the_item_it_received(tmp_path: Path) -> None:
    flow = one("source", "src", 3, then="upper_in_place")
    run, _ = runner(flow, catalogue(tmp_path), serialize=True)
    result = run.run()
    assert result.state == "failed"
    assert result.failure is not None
    assert result.failure.node == "b"
    assert "b changed item 0 of frame 0 it received on port items" in result.failure.error
    assert "return a new message" in result.failure.error


def test_a_frame_of_messages_splits_where_a_frame_of_bytes_does(tmp_path: Path) -> None:
    # 30 items of 40 kB, frames of at most 100 kB: three items a frame, either way.
    frames = {}
    progdefs = catalogue(tmp_path)
    for serialize in (False, True):
        run, exported = runner(
            one("blobs", "blobs", 30),
            progdefs,
            serialize=serialize,
            settings=StreamSettings(frame_max_bytes=100_000),
        )
        assert run.run().state == "succeeded"
        assert len(exported) == 30
        (blobs,) = [r for r in run.runs if r.descriptor.node == "a"]
        frames[serialize] = blobs.frames_sent()["blobs"]
    assert frames[False] == frames[True] == 11  # ten of three items, then end-of-stream


def dagyo_run(flow: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "run", str(flow)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "",
            "DAGYO_CACHE_DIR": os.environ["DAGYO_CACHE_DIR"],
            "PYTHONPATH": str(ROOT),
            **env,
        },
    )


def test_dagyo_run_with_serialize_gives_the_same_lines() -> None:
    plain = dagyo_run(EXAMPLES / "hello.json")
    serialized = dagyo_run(EXAMPLES / "hello.json", DAGYO_EMBEDDED_SERIALIZE="1")
    assert plain.returncode == serialized.returncode == 0, serialized.stderr
    assert plain.stdout == serialized.stdout
    assert len(plain.stdout.splitlines()) == 3


def test_dagyo_run_with_a_bad_serialize_says_so_in_one_line_and_exits_2() -> None:
    result = dagyo_run(EXAMPLES / "hello.json", DAGYO_EMBEDDED_SERIALIZE="yes")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "DAGYO_EMBEDDED_SERIALIZE='yes': set it to 1 or 0" in line
