"""Progdefs that bring their own protobuf messages: checked at load, the same on both
transports, documented by `dagyo types`, and every bad input a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import FlowInvalid, ProgdefInvalid
from executor.core.progdef import load_catalogue, load_progdef
from scheduler.embedded import EmbeddedRunner
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow
from tests.cluster import LocalCluster
from tests.commands import run_dagyo
from tests.conftest import PROGDEFS, ROOT
from tests.embedded import package, proto_progdef

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


def test_a_proto_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    pkg = package()
    folder = proto_progdef(
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
    folder = proto_progdef(tmp_path / "imp", {"p.proto": proto}, f"{pkg}.P")
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
    folder = proto_progdef(
        tmp_path / "rich", {"base.proto": base, "rich.proto": rich}, f"{pkg}.Row"
    )
    loaded = load_progdef(folder)
    from executor.core.types import message_class

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
    load_progdef(proto_progdef(tmp_path / "one", {"p.proto": first}, f"{pkg}.P"))
    load_progdef(
        proto_progdef(tmp_path / "same", {"p.proto": first}, f"{pkg}.P")
    )  # the same is fine
    with pytest.raises(ProgdefInvalid, match="p.proto defines its messages differently .* one"):
        load_progdef(proto_progdef(tmp_path / "two", {"p.proto": second}, f"{pkg}.P"))


@pytest.mark.parametrize("entry", ["../x.proto", "/etc/x.proto"])
def test_protos_outside_the_folder_are_refused(tmp_path: Path, entry: str) -> None:
    folder = proto_progdef(tmp_path / "out", {}, "dagyo.types.Text", listed=[entry])
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
    proto_progdef(root / "good", {f"{pkg}.proto": good}, f"{pkg}.P")
    proto_progdef(root / "broken", {"broken.proto": bad}, f"{pkg}.b.Q")
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


def test_dagyo_progdefs_shows_which_progdef_is_left_out_and_why(tmp_path: Path) -> None:
    folder, _ = broken_catalogue(tmp_path / "catalogue")
    done = run_dagyo("progdefs", "--progdefs", str(folder))
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
    done = run_dagyo("validate", str(flow), "--progdefs", str(folder))
    assert done.returncode == 2
    assert (
        f"dagyo: {flow}: node b: progdef 'broken' is left out of the catalogue: broken.proto:3:23: "
        "Expected field number."
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
    folder = proto_progdef(
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
