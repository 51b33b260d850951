"""A type shared by two progdefs of a catalogue: through the catalogue's protos/ folder, the
same for the catalogue loader and for an executor alone; and two definitions of one .proto
file leave out every progdef involved, naming the message and field that differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.core.errors import ProgdefInvalid
from executor.core.progdef import load_catalogue
from tests.commands import run_dagyo
from tests.conftest import ROOT
from tests.embedded import package


def word_catalogue(
    root: Path, *, shared: bool, counter: str = "word_count"
) -> tuple[Path, str, str]:
    """tokenize (Text -> Word) and word_count (Word -> Int64), Word in one .proto file: in
    tokenize's folder and listed by it alone, or in the catalogue's protos/ folder and listed
    by both. Returns the catalogue, the typename and the .proto file's name."""
    pkg = package()
    proto = f"{pkg}_words.proto"
    text = f'syntax = "proto3";\npackage {pkg};\nmessage Word {{ string text = 1; }}\n'
    catalogue = root / "catalogue"
    (catalogue / "tokenize").mkdir(parents=True)
    (catalogue / counter).mkdir()
    home = catalogue / "protos" if shared else catalogue / "tokenize"
    home.mkdir(exist_ok=True)
    (home / proto).write_text(text)
    word = f"{pkg}.Word"
    for name, ports, protos in (
        ("tokenize", {"inputs": {"text": "dagyo.types.Text"}, "outputs": {"words": word}}, [proto]),
        (
            counter,
            {"inputs": {"words": word}, "outputs": {"total": "dagyo.types.Int64"}},
            [proto] if shared else [],
        ),
    ):
        document = {"name": name, **ports, "run": "main:run", "protos": protos}
        (catalogue / name / "progdef.json").write_text(json.dumps(document))
        (catalogue / name / "main.py").write_text("def run(job):\n    pass\n")
    return catalogue, word, proto


# Before and after tokenize in name order: the catalogue answers the same either way.
@pytest.mark.parametrize("counter", ["word_count", "count_words"])
def test_a_type_only_another_progdef_defines_is_refused_saying_how_to_share(
    tmp_path: Path, counter: str
) -> None:
    catalogue, word, proto = word_catalogue(tmp_path, shared=False, counter=counter)
    with pytest.raises(ProgdefInvalid) as caught:
        load_catalogue(catalogue)
    assert caught.value.problems == [
        f"{catalogue / counter / 'progdef.json'}: input 'words': {word} is not defined by "
        f'this progdef\'s "protos" (it is defined by {proto} of progdef tokenize): to share a '
        f".proto between progdefs, move it into the catalogue's protos/ folder "
        f'({catalogue / "protos" / proto}) and list "{proto}" in the "protos" of each'
    ]


def test_the_catalogue_protos_folder_shares_a_type_with_the_loader_and_an_executor_alike(
    tmp_path: Path,
) -> None:
    catalogue, word, _ = word_catalogue(tmp_path, shared=True)
    loaded = load_catalogue(catalogue)
    assert sorted(loaded) == ["tokenize", "word_count"] and not loaded.left_out
    assert loaded["word_count"].inputs == {"words": word}
    # An executor loads its progdef alone, in a process of its own: the type is there too.
    alone = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from executor.core.progdef import load_progdef; "
            "from executor.core.types import message_class; "
            f"load_progdef(sys.argv[1]); print(message_class({word!r}).DESCRIPTOR.full_name)",
            str(catalogue / "word_count"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == f"{word}\n"


def test_a_protos_entry_in_another_progdefs_folder_says_how_to_share(tmp_path: Path) -> None:
    catalogue, _, proto = word_catalogue(tmp_path, shared=False)
    document = json.loads((catalogue / "word_count" / "progdef.json").read_text())
    document["protos"] = [f"../tokenize/{proto}"]
    (catalogue / "word_count" / "progdef.json").write_text(json.dumps(document))
    left = load_catalogue(catalogue).left_out["word_count"]
    assert left.problems == (
        f"{catalogue / 'word_count' / 'progdef.json'}: protos entry '../tokenize/{proto}' is "
        "outside the progdef's folder: to share a .proto between progdefs, move it into the "
        f'catalogue\'s protos/ folder ({catalogue / "protos" / proto}) and list "{proto}" in '
        'the "protos" of each',
    )


GEO = 'syntax = "proto3";\npackage acme.geo;\nmessage Point {{ {x} x = 1; double y = 2; }}\n'


def test_two_definitions_of_one_proto_leave_out_every_progdef_naming_the_field(
    tmp_path: Path,
) -> None:
    catalogue = tmp_path / "catalogue"
    for name, kind in (("geo_points", "double"), ("geo_bad", "string"), ("geo_same", "double")):
        folder = catalogue / name
        folder.mkdir(parents=True)
        (folder / "geo.proto").write_text(GEO.format(x=kind))
        document = {
            "name": name,
            "inputs": {"points": "acme.geo.Point"},
            "outputs": {},
            "run": "main:run",
            "protos": ["geo.proto"],
        }
        (folder / "progdef.json").write_text(json.dumps(document))
        (folder / "main.py").write_text("def run(job):\n    pass\n")
    why = "acme.geo.Point.x: double in geo_points/geo.proto, string in geo_bad/geo.proto"
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"name": "f", "nodes": {"p": {"progdef": "geo_points"}}}))
    # A process of its own: this one's registry may hold another acme.geo already.
    checked = run_dagyo("validate", str(flow), "--progdefs", str(catalogue))
    assert checked.returncode == 2
    assert (
        f"dagyo: {flow}: node p: progdef 'geo_points' is left out of the catalogue: {why}: "
        "one .proto file name, two definitions; make them one (a shared .proto goes in the "
        "catalogue's protos/ folder), or give one another file name and package"
    ) in checked.stderr.splitlines()
    listed = run_dagyo("progdefs", "--progdefs", str(catalogue))
    assert listed.returncode == 0, listed.stderr
    left = {line.split()[0]: line for line in listed.stdout.splitlines() if "left out" in line}
    assert sorted(left) == ["geo_bad", "geo_points", "geo_same"]
    assert all(why in line for line in left.values())


def test_editing_a_shared_proto_gives_the_progdefs_listing_it_new_versions(tmp_path: Path) -> None:
    from executor.core.progdef import load_progdef

    catalogue, _, proto = word_catalogue(tmp_path, shared=True)
    (catalogue / "other").mkdir()
    (catalogue / "other" / "progdef.json").write_text(
        json.dumps({"name": "other", "inputs": {}, "outputs": {}, "run": "main:run"})
    )
    before = {name: load_progdef(catalogue / name).version for name in ("word_count", "other")}
    shared = catalogue / "protos" / proto
    shared.write_text(shared.read_text() + "// A word.\n")
    after = {name: load_progdef(catalogue / name).version for name in ("word_count", "other")}
    assert after["word_count"] != before["word_count"]
    assert after["other"] == before["other"]


def test_build_puts_the_shared_proto_in_the_image_of_each_progdef_listing_it(
    tmp_path: Path,
) -> None:
    from google.protobuf import descriptor_pb2

    from scheduler.deploy.images import plan_images

    catalogue, _, proto = word_catalogue(tmp_path, shared=True)
    plan = plan_images(load_catalogue(catalogue), base_image="b:1")
    assert sorted(image.progdef for image in plan if image.progdef) == ["tokenize", "word_count"]
    for image in (image for image in plan if image.progdef):
        compiled = descriptor_pb2.FileDescriptorSet.FromString(image.files["types.binpb"])
        assert [file.name for file in compiled.file] == [proto], image.progdef


def test_a_malformed_progdef_json_beside_a_clash_is_reported_as_such(tmp_path: Path) -> None:
    pkg = package()
    catalogue = tmp_path / "catalogue"
    for name, kind in (("one", "double"), ("two", "string")):
        folder = catalogue / name
        folder.mkdir(parents=True)
        (folder / f"{pkg}.proto").write_text(
            f'syntax = "proto3";\npackage {pkg};\nmessage P {{ {kind} x = 1; }}\n'
        )
        document = {
            "name": name,
            "inputs": {"points": f"{pkg}.P"},
            "outputs": {},
            "run": "main:run",
            "protos": [f"{pkg}.proto"],
        }
        (folder / "progdef.json").write_text(json.dumps(document))
    (catalogue / "odd").mkdir()
    (catalogue / "odd" / "progdef.json").write_text("[1, 2")
    with pytest.raises(ProgdefInvalid) as caught:
        load_catalogue(catalogue)
    [problem] = caught.value.problems
    assert problem.startswith(f"{catalogue / 'odd' / 'progdef.json'}:1:")
