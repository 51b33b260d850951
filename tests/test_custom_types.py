"""Progdefs that bring their own protobuf messages: checked at load, the same on both
transports, documented by `dagyo types`, and every bad input a clear error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.errors import FlowInvalid, ProgdefInvalid
from executor.progdef import load_catalogue, load_progdef
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.model import parse_flow
from tests.cluster import LocalCluster
from tests.conftest import PROGDEFS, ROOT

GEO = json.loads((ROOT / "examples" / "geo.json").read_text())
KM = [{"value": 0.0}, {"value": 877.465}, {"value": 343.53}]


def run_embedded(flow: dict[str, Any]) -> dict[str, list[Any]]:
    from google.protobuf import json_format

    exports: dict[str, list[Any]] = {}
    checked = check_flow(parse_flow(json.dumps(flow)), load_catalogue(PROGDEFS))
    runner = EmbeddedRunner(
        checked,
        on_export=lambda name, message: exports.setdefault(name, []).append(
            json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        ),
    )
    assert runner.run().failure is None
    return exports


# Not for the module: one scheduler per vhost, and a later test here starts `dagyo up`.
@pytest.fixture
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(broker_url, tmp_path_factory.mktemp("geo"), names=("distance",)).start()
    yield cluster
    cluster.close()


def test_a_custom_type_flows_the_same_embedded_and_on_the_cluster(cluster: LocalCluster) -> None:
    assert run_embedded(GEO) == {"km": KM}
    record, exports = cluster.run(GEO)
    assert exports == {"km": KM}


def test_dagyo_run_of_the_example_prints_the_distances() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "run", "examples/geo.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["value"] for line in done.stdout.splitlines()] == KM


def test_dagyo_types_documents_a_custom_type() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "types", "acme.geo.Point", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["typename"] == "acme.geo.Point"
    assert doc["doc"] == "A point on the Earth's surface, seen at a time."
    assert doc["fields"][0] == {
        "name": "lat",
        "type": "double",
        "doc": "Degrees north of the equator, -90 to 90.",
    }
    assert doc["fields"][2]["type"] == "google.protobuf.Timestamp"
    assert "distance" in doc["source"]


# --- bad input --------------------------------------------------------------------------------


def progdef(
    folder: Path, protos: dict[str, str], port: str, listed: list[str] | None = None
) -> Path:
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


def test_a_proto_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    pkg = package()
    folder = progdef(
        tmp_path / "bad",
        {"bad.proto": f'syntax = "proto3";\npackage {pkg};\nmessage P {{ int32 x = }}\n'},
        f"{pkg}.P",
    )
    with pytest.raises(ProgdefInvalid) as caught:
        load_progdef(folder)
    text = str(caught.value)
    assert "bad.proto:3" in text and "Traceback" not in text


def test_an_import_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    pkg = package()
    proto = f'syntax = "proto3";\npackage {pkg};\nimport "nowhere.proto";\nmessage P {{}}\n'
    folder = progdef(tmp_path / "imp", {"p.proto": proto}, f"{pkg}.P")
    with pytest.raises(ProgdefInvalid, match="nowhere.proto"):
        load_progdef(folder)


def test_imports_between_files_and_nested_types_round_trip(tmp_path: Path) -> None:
    pkg = package()
    base = f'syntax = "proto3";\npackage {pkg};\nmessage Tag {{ string name = 1; }}\n'
    rich = (
        f'syntax = "proto3";\npackage {pkg};\nimport "base.proto";\n'
        'import "google/protobuf/timestamp.proto";\n'
        "message Row {\n  enum Kind { A = 0; B = 1; }\n  Kind kind = 1;\n"
        "  repeated Tag tags = 2;\n  map<string, int64> counts = 3;\n"
        "  oneof id { string name = 4; int64 number = 5; }\n"
        "  google.protobuf.Timestamp at = 6;\n}\n"
    )
    folder = progdef(tmp_path / "rich", {"base.proto": base, "rich.proto": rich}, f"{pkg}.Row")
    loaded = load_progdef(folder)
    from executor.types import message_class

    value = {
        "kind": "B",
        "tags": [{"name": "x"}],
        "counts": {"a": "3"},
        "number": "7",
        "at": "2026-01-01T00:00:00Z",
    }
    from google.protobuf import json_format

    cls = message_class(f"{pkg}.Row")
    item = json_format.ParseDict(value, cls())
    assert json_format.MessageToDict(cls.FromString(item.SerializeToString())) == value
    assert loaded.protos == ("base.proto", "rich.proto")


def test_two_progdefs_defining_one_name_differently_are_refused(tmp_path: Path) -> None:
    pkg = package()
    first = f'syntax = "proto3";\npackage {pkg};\nmessage P {{ int32 x = 1; }}\n'
    second = f'syntax = "proto3";\npackage {pkg};\nmessage P {{ string x = 1; }}\n'
    load_progdef(progdef(tmp_path / "one", {"p.proto": first}, f"{pkg}.P"))
    load_progdef(progdef(tmp_path / "same", {"p.proto": first}, f"{pkg}.P"))  # the same is fine
    with pytest.raises(ProgdefInvalid, match="p.proto defines its messages differently .* one"):
        load_progdef(progdef(tmp_path / "two", {"p.proto": second}, f"{pkg}.P"))


@pytest.mark.parametrize("entry", ["../x.proto", "/etc/x.proto"])
def test_protos_outside_the_folder_are_refused(tmp_path: Path, entry: str) -> None:
    folder = progdef(tmp_path / "out", {}, "dagyo.types.Text", listed=[entry])
    with pytest.raises(ProgdefInvalid, match="outside the progdef's folder"):
        load_progdef(folder)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"lat": 1, "color": "red"}, 'no field named "color"'),
        ({"lat": "north"}, "lat"),
        ({"label": 3}, "label"),
    ],
)
def test_a_custom_const_of_the_wrong_shape_names_the_field(value: Any, message: str) -> None:
    flow = {**GEO, "consts": [{"to": "legs.points", "values": [value]}]}
    with pytest.raises(FlowInvalid) as caught:
        check_flow(parse_flow(json.dumps(flow)), load_catalogue(PROGDEFS), source="geo.json")
    [problem] = caught.value.problems
    assert problem.startswith("geo.json: const to legs.points: value 1 (")
    assert "acme.geo.Point" in problem and message in problem


def test_an_int64_out_of_range_is_refused(tmp_path: Path) -> None:
    flow = {**GEO, "consts": [{"to": "legs.points", "values": [{"at": {"seconds": 1}}]}]}
    with pytest.raises(FlowInvalid, match="acme.geo.Point"):
        check_flow(parse_flow(json.dumps(flow)), load_catalogue(PROGDEFS))
    big = {"to": "n.count", "values": [{"value": str(2**63)}]}
    counted = {
        "name": "c",
        "nodes": {"n": {"progdef": "source"}, "v": {"progdef": "void_sink"}},
        "edges": [{"from": "n.src", "to": "v.sink"}],
        "consts": [big],
    }
    with pytest.raises(FlowInvalid, match="dagyo.types.Int64"):
        check_flow(parse_flow(json.dumps(counted)), load_catalogue(PROGDEFS))


# --- a progdef whose protos fail is left out ---------------------------------------------------


def broken_catalogue(root: Path) -> tuple[Path, str]:
    """A catalogue of ``good`` (a custom type that compiles) and ``broken`` (a syntax error)."""
    pkg = package()
    good = f'syntax = "proto3";\npackage {pkg};\nmessage P {{ int32 x = 1; }}\n'
    bad = f'syntax = "proto3";\npackage {pkg}.b;\nmessage Q {{ int32 x = }}\n'
    # A file name of its own too: the registry is one per process, keyed by file name.
    progdef(root / "good", {f"{pkg}.proto": good}, f"{pkg}.P")
    progdef(root / "broken", {"broken.proto": bad}, f"{pkg}.b.Q")
    return root, pkg


def test_a_progdef_whose_protos_fail_is_left_out_and_the_others_load(tmp_path: Path) -> None:
    folder, _ = broken_catalogue(tmp_path / "catalogue")
    catalogue = load_catalogue(folder)
    assert list(catalogue) == ["good"]
    left = catalogue.left_out["broken"]
    assert left.name == "broken"
    [line] = left.lines()
    assert line.startswith("progdef broken is left out of the catalogue: ")
    assert "broken.proto:3:" in line and "Traceback" not in line
    assert line.endswith('fix its .proto files, or take them out of "protos"')


def test_a_malformed_progdef_json_still_fails_the_whole_catalogue(tmp_path: Path) -> None:
    folder, _ = broken_catalogue(tmp_path / "catalogue")
    (folder / "odd").mkdir()
    (folder / "odd" / "progdef.json").write_text('{"name": "odd"}')
    with pytest.raises(ProgdefInvalid, match="missing required key 'inputs'"):
        load_catalogue(folder)


def dagyo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dagyo_progdefs_shows_which_progdef_is_left_out_and_why(tmp_path: Path) -> None:
    folder, _ = broken_catalogue(tmp_path / "catalogue")
    done = dagyo("progdefs", "--progdefs", str(folder))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("good  (points: ")
    [left] = [line for line in lines if line.startswith("broken")]
    assert left.startswith("broken  left out: ") and "broken.proto:3:" in left
    assert "Traceback" not in done.stdout + done.stderr


def test_a_flow_naming_a_left_out_progdef_is_told_why(tmp_path: Path) -> None:
    folder, _ = broken_catalogue(tmp_path / "catalogue")
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"name": "f", "nodes": {"b": {"progdef": "broken"}}}))
    done = dagyo("validate", str(flow), "--progdefs", str(folder))
    assert done.returncode == 2
    assert (
        f"dagyo: {flow}: node b: progdef 'broken' is left out of the catalogue: its protos "
        "do not load (`dagyo progdefs` says why)"
    ) in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


def test_a_progdef_left_out_for_its_protos_stops_build_and_deploy(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scheduler.cli.deploy import build, deploy

    folder, _ = broken_catalogue(tmp_path / "catalogue")
    for command, args in ((deploy, ["--dry-run"]), (build, ["--print"])):
        result = CliRunner().invoke(command, [*args, "--progdefs", str(folder)])
        assert result.exit_code == 2, result.output
        (line,) = result.output.splitlines()
        assert line.startswith("dagyo: progdef broken is left out of the catalogue: ")
        assert "broken.proto:3:" in line and "Traceback" not in result.output


def test_a_proto_edited_after_this_process_loaded_it_says_to_restart(tmp_path: Path) -> None:
    pkg = package()
    name = f"{pkg}.proto"
    folder = progdef(
        tmp_path / "catalogue" / "edited",
        {name: f'syntax = "proto3";\npackage {pkg};\nmessage P {{ int32 x = 1; }}\n'},
        f"{pkg}.P",
    )
    assert list(load_catalogue(folder.parent)) == ["edited"]
    (folder / name).write_text(
        f'syntax = "proto3";\npackage {pkg};\nmessage P {{ string x = 1; }}\n'
    )
    catalogue = load_catalogue(folder.parent)
    [line] = catalogue.left_out["edited"].lines()
    assert f"{name} changed since this process loaded it" in line
    assert "restart the process" in line


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

    def dagyo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    embedded = dagyo("run", str(flow))
    assert embedded.returncode == 0, embedded.stderr
    exports = exports_of(embedded.stdout)
    # Nested messages, enums, repeated and map fields, oneof, an import between files and a
    # well-known type: each row comes out as it went in, through a fan-out and a type variable.
    assert exports == {"rows": EXPORTED_ROWS, "later": EXPORTED_ROWS, "total": [{"value": "3"}]}

    graph = dagyo("run", str(flow), "--graph", "mermaid")
    assert graph.returncode == 0, graph.stderr
    assert "acme.rows.Row" in graph.stdout

    documented = dagyo("types", "acme.rows.Row", "--json")
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
        assert up.stderr is not None
        lines = [up.stderr.readline()]
        while lines[-1] and "the cluster is up" not in lines[-1]:
            lines.append(up.stderr.readline())
        assert "the cluster is up" in lines[-1], "".join(lines)
        clustered = dagyo("flow", "submit", str(flow), "--wait")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    from executor.inbox import Inbox
    from executor.inputs import InputStream
    from executor.types import message_class

    load_catalogue(PROGDEFS)
    inbox = Inbox(threading.Event())
    inbox.add_port("points")
    inbox.put("points", frame.SerializeToString())
    point = message_class("acme.geo.Point")
    return InputStream(port="points", edge="p.out -> legs.points", message_class=point, inbox=inbox)


def test_items_of_another_type_on_a_custom_stream_panic_naming_the_edge() -> None:
    from executor.errors import DecodeError, StreamCorrupt
    from executor.pb.dagyo.v1.frame_pb2 import Frame
    from executor.types import Text

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
    folder = progdef(
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
