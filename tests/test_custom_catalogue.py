"""A catalogue of custom types written from the README (nested messages, enums, repeated and
map fields, oneof, an import between files, a Timestamp) runs the same embedded and on
`dagyo up`; a job carries its ports' types; edited protos give new versions."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import FlowInvalid
from executor.core.progdef import load_catalogue, load_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.cluster import broker_leftovers, own_vhost
from tests.commands import free_port, read_until
from tests.conftest import PROGDEFS, ROOT
from tests.embedded import package, proto_progdef

# --- a catalogue of its own, written from the README, embedded and on `dagyo up` ------------

TAGS_PROTO = """syntax = "proto3";
package acme.rows;

// A label on a row.
message Tag {
  // Its name.
  string name = 1;
}
"""
ROW_PROTO = """syntax = "proto3";
package acme.rows;

import "tags.proto";
import "google/protobuf/timestamp.proto";

// One row of a table.
message Row {
  enum Kind { KIND_UNSPECIFIED = 0; FACT = 1; GUESS = 2; }
  message Cell { string column = 1; double value = 2; }
  // What the row is.
  Kind kind = 1;
  repeated Tag tags = 2;
  map<string, int64> counts = 3;
  oneof id {
    string name = 4;
    int64 number = 5;
  }
  google.protobuf.Timestamp at = 6;
  repeated Cell cells = 7;
}
"""
# Stream style, building each row anew through its port, and function style, returning it.
STAMP = """from executor import Job


def run(job: Job) -> None:
    out = job.outputs["rows"]
    for row in job.inputs["rows"]:
        copy = out.new(kind=row.kind, counts=dict(row.counts))
        copy.MergeFrom(row)
        out.send(copy)
"""
ECHO = """def handler(ctx, row):
    return row
"""
ROWS = [
    {
        "kind": "FACT",
        "tags": [{"name": "a"}, {"name": "b"}],
        "counts": {"x": "1", "y": "9007199254740993"},
        "name": "first",
        "at": "2026-01-01T00:00:00Z",
        "cells": [{"column": "c", "value": 1.5}],
    },
    {"kind": "GUESS", "number": "-7"},
    {},
]
# As exports show them: every field without presence, at its default when unset.
DEFAULTS = {"kind": "KIND_UNSPECIFIED", "tags": [], "counts": {}, "cells": []}
EXPORTED_ROWS = [{**DEFAULTS, **row} for row in ROWS]
ROWS_FLOW = {
    "name": "rows",
    "nodes": {
        "stamp": {"progdef": "stamp"},
        "echo": {"progdef": "echo"},
        "later": {"progdef": "slow"},
        "n": {"progdef": "count"},
    },
    "edges": [
        {"from": "stamp.rows", "to": "echo.rows"},
        {"from": "echo.rows", "to": "later.items"},
        {"from": "echo.rows", "to": "n.items"},
    ],
    "consts": [
        {"to": "stamp.rows", "values": ROWS},
        {"to": "later.delay_ms", "values": [1]},
    ],
    "exports": {"rows": "echo.rows", "later": "later.items", "total": "n.total"},
}


def rows_catalogue(root: Path) -> Path:
    """stamp and echo, each bringing the acme.rows protos (shared, the same), and slow and
    count from the samples: a catalogue as the README tells an author to write one."""
    catalogue = root / "catalogue"
    ports = {"inputs": {"rows": "acme.rows.Row"}, "outputs": {"rows": "acme.rows.Row"}}
    for name, code, style, run in (
        ("stamp", STAMP, "stream", "main:run"),
        ("echo", ECHO, "function", "main:handler"),
    ):
        folder = catalogue / name
        folder.mkdir(parents=True)
        (folder / "tags.proto").write_text(TAGS_PROTO)
        (folder / "row.proto").write_text(ROW_PROTO)
        (folder / "main.py").write_text(code)
        document = {
            "name": name,
            "description": f"Passes rows on ({uuid.uuid4().hex[:8]}).",  # a mailbox of its own
            **ports,
            "run": run,
            "style": style,
            "protos": ["tags.proto", "row.proto"],
        }
        (folder / "progdef.json").write_text(json.dumps(document))
    for name in ("slow", "count"):
        shutil.copytree(PROGDEFS / name, catalogue / name, ignore=shutil.ignore_patterns("__*"))
    return catalogue


def exports_of(stdout: str) -> dict[str, list[Any]]:
    exports: dict[str, list[Any]] = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        exports.setdefault(record["export"], []).append(record["value"])
    return exports


def test_a_catalogue_of_custom_types_runs_the_same_embedded_and_on_dagyo_up(
    broker_url: str, tmp_path: Path
) -> None:
    catalogue = rows_catalogue(tmp_path)
    flow = tmp_path / "rows.json"
    flow.write_text(json.dumps(ROWS_FLOW))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    env.update({"DAGYO_QUEUE": broker_url, "DAGYO_PROGDEFS": str(catalogue)})

    def run_dagyo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    embedded = run_dagyo("run", str(flow))
    assert embedded.returncode == 0, embedded.stderr
    exports = exports_of(embedded.stdout)
    # Nested messages, enums, repeated and map fields, oneof, an import between files and a
    # well-known type: each row comes out as it went in, through a fan-out and a type variable.
    assert exports == {"rows": EXPORTED_ROWS, "later": EXPORTED_ROWS, "total": [{"value": "3"}]}

    graph = run_dagyo("run", str(flow), "--graph", "mermaid")
    assert graph.returncode == 0, graph.stderr
    assert "acme.rows.Row" in graph.stdout

    documented = run_dagyo("types", "acme.rows.Row", "--json")
    assert documented.returncode == 0, documented.stderr
    doc = json.loads(documented.stdout)
    assert doc["doc"] == "One row of a table."
    assert doc["source"] == "row.proto (progdef echo)"
    assert doc["used_by"] == ["echo", "stamp"]
    assert [f["type"] for f in doc["fields"]] == [
        "acme.rows.Row.Kind",
        "repeated acme.rows.Tag",
        "map<string, int64>",
        "string",
        "int64",
        "google.protobuf.Timestamp",
        "repeated acme.rows.Row.Cell",
    ]

    address = f"127.0.0.1:{free_port()}"
    env["DAGYO_SCHEDULER"] = address
    env["DAGYO_STATE"] = str(tmp_path / "state.sqlite3")
    up = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "up", "--listen", address, "--no-ui"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(up, "the cluster is up", timeout_s=60)
        clustered = run_dagyo("flow", "submit", str(flow), "--wait")
        assert clustered.returncode == 0, clustered.stderr
        assert exports_of(clustered.stdout) == exports
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()


def test_a_job_carries_the_types_of_its_ports_that_are_not_built_in() -> None:
    from scheduler.flow.plan import plan_flow

    flow = {
        "name": "later",
        "nodes": {"wait": {"progdef": "slow"}, "legs": {"progdef": "distance"}},
        "edges": [{"from": "wait.items", "to": "legs.points"}],
        "consts": [
            {"to": "wait.items", "values": [{"lat": 1.0}]},
            {"to": "wait.delay_ms", "values": [0]},
        ],
        "exports": {"km": "legs.km"},
    }
    checked = check_flow(parse_flow(json.dumps(flow)), load_catalogue(PROGDEFS))
    jobs = {job.descriptor.node: job.descriptor for job in plan_flow(checked, flow_id="f").jobs}
    # slow knows no acme.geo.Point of its own: its job brings it, and nothing it has already
    for node in ("wait", "legs"):
        files = jobs[node].types.file
        assert [file.name for file in files] == ["geo.proto"], node
        assert not files[0].HasField("source_code_info")


def points_stream(frame: Any) -> Any:
    import threading

    from executor._runtime.inbox import Inbox
    from executor.core.types import message_class
    from executor.inputs import InputStream

    load_catalogue(PROGDEFS)
    inbox = Inbox(threading.Event())
    inbox.add_port("points")
    inbox.put("points", frame.SerializeToString())
    point = message_class("acme.geo.Point")
    return InputStream(port="points", edge="p.out -> legs.points", message_class=point, inbox=inbox)


def test_items_of_another_type_on_a_custom_stream_panic_naming_the_edge() -> None:
    from executor.core.errors import DecodeError, StreamCorrupt
    from executor.core.types import Text
    from executor.pb.dagyo.v1.frame_pb2 import Frame

    # A Text item happens to parse as a Point: the frame's typename is what catches it.
    text = Text(text="abcdefgh").SerializeToString()
    stream = points_stream(Frame(items=[text], typename="dagyo.types.Text"))
    with pytest.raises(
        StreamCorrupt,
        match=r"^stream p.out -> legs.points: a frame of dagyo.types.Text arrived on a stream "
        r"of acme.geo.Point",
    ):
        stream.next_batch()
    stream = points_stream(Frame(items=[b"\x09\x01\x02"], typename="acme.geo.Point"))
    with pytest.raises(DecodeError, match=r"^stream p.out -> legs.points: .*acme.geo.Point"):
        stream.next_batch()


def test_a_custom_int64_const_out_of_range_is_refused(tmp_path: Path) -> None:
    pkg = package()
    folder = proto_progdef(
        tmp_path / "catalogue" / "counter",
        {f"{pkg}.proto": f'syntax = "proto3";\npackage {pkg};\nmessage N {{ int64 n = 1; }}\n'},
        f"{pkg}.N",
    )
    flow = {
        "name": "big",
        "nodes": {"c": {"progdef": "counter"}},
        "consts": [{"to": "c.points", "values": [{"n": str(2**63)}]}],
    }
    with pytest.raises(FlowInvalid) as caught:
        check_flow(parse_flow(json.dumps(flow)), load_catalogue(folder.parent), source="big.json")
    [problem] = caught.value.problems
    assert problem.startswith("big.json: const to c.points: value 1 (")
    assert f"{pkg}.N" in problem and "n" in problem and "Traceback" not in problem


def test_editing_a_proto_gives_the_progdef_a_new_version_and_mailbox(tmp_path: Path) -> None:
    folder = tmp_path / "distance"
    shutil.copytree(PROGDEFS / "distance", folder, ignore=shutil.ignore_patterns("__*"))
    before = load_progdef(folder).mailbox
    proto = folder / "geo.proto"
    proto.write_text(proto.read_text().replace("// When the point was seen.", "// Seen at."))
    assert load_progdef(folder).mailbox != before


def test_build_print_shows_the_compiled_types_an_image_adds(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scheduler.cli.deploy import build

    catalogue = tmp_path / "catalogue"
    shutil.copytree(PROGDEFS / "distance", catalogue / "distance")
    (catalogue / "distance" / "types.binpb").unlink()
    result = CliRunner().invoke(
        build, ["--print", "--base-image", "b:1", "--progdefs", str(catalogue)]
    )
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "dagyo-distance:" in line]
    assert line.endswith("  adds=types.binpb")


# --- the README's "Your own catalogue", exactly as written there -----------------------------


def readme_catalogue(root: Path) -> list[str]:
    """Write the files of the README's "Your own catalogue" under ``root``; return the lines
    of its console block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("#### Your own catalogue", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    names = re.findall(r"^`([^`]+)`(?: and `([^`]+)`)?:$", section, re.M)
    files = [name for pair in names for name in pair if name]
    written = [block for kind, block in blocks if kind != "console"]
    assert len(files) == len(written), (files, len(written))
    for name, content in zip(files, written, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    [console] = [block for kind, block in blocks if kind == "console"]
    return console.splitlines()


def test_the_readme_catalogue_with_a_shared_type_runs_the_same_embedded_and_on_dagyo_up(
    amqp_url: str, tmp_path: Path
) -> None:
    console = readme_catalogue(tmp_path)
    commands = [shlex.split(line[2:]) for line in console if line.startswith("$ ")]
    shown = [line for line in console if line.startswith("{")]
    assert [command[:2] for command in commands] == [
        ["dagyo", "run"],
        ["dagyo", "up"],
        ["dagyo", "flow"],
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    env["PYTHONPATH"] = str(ROOT)

    def dagyo(command: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler.cli", *command[1:]],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    embedded = dagyo(commands[0])
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.splitlines() == shown[:1]

    with own_vhost(amqp_url) as url:
        address = f"127.0.0.1:{free_port()}"
        cluster = {"DAGYO_QUEUE": url, "DAGYO_SCHEDULER": address}
        up = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", *commands[1][1:], "--no-ui"],
            cwd=tmp_path,
            env={**env, **cluster, "DAGYO_STATE": str(tmp_path / "state.sqlite3")},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            read_until(up, "the cluster is up", timeout_s=60)
            clustered = dagyo(commands[2], **cluster)
            assert clustered.returncode == 0, clustered.stderr
            assert clustered.stdout.splitlines() == shown[1:]
        finally:
            up.send_signal(signal.SIGINT)
            try:
                assert up.wait(60) == 0
            finally:
                if up.poll() is None:
                    up.kill()
                    up.wait()
        assert broker_leftovers(url) == ([], [])
