"""The scheduler's Catalogue call: the progdefs a caller may use, their ports, every type
with its docs, fields and JSON Schema, and the descriptor set that defines them, so a client
without the catalogue folder (in any language) builds and reads items.

A client here builds its own descriptor pool from the answer and never touches the
executor's registry, as a client in another language would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory

from executor.core.progdef import load_catalogue
from executor.core.types import message_class
from scheduler.client.api import SchedulerClient
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Principal, Quotas, token_digest, tokens_json
from scheduler.service.config import SchedulerSettings
from scheduler.service.server import Scheduler
from tests.conftest import PROGDEFS
from tests.scheduler.conftest import write_progdef
from tests.scheduler.fake_executor import EMIT, RELAY

# One package (and file name) per test run: the registry is one per process.
PACKAGE = f"t{uuid.uuid4().hex[:8]}"
PRIVATE_TYPE = f"{PACKAGE}.Secret"
PRIVATE_PROTO = f"{PACKAGE}.proto"
TOKENS = {
    "alice": Principal("team-a", "user", Quotas()),
    "bob": Principal("team-b", "user", Quotas()),
}


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """emit, relay, the sample distance (acme.geo.Point), ``private`` (team-a only, a type
    of its own), ``broken`` (protos with a syntax error) and ``hidden_broken`` (the same,
    team-a only)."""
    folder = tmp_path / "progdefs"
    version = uuid.uuid4().hex[:16]
    write_progdef(folder / "emit", EMIT, version)
    write_progdef(folder / "relay", RELAY, version)
    shutil.copytree(PROGDEFS / "distance", folder / "distance")
    (folder / "distance" / "VERSION").write_text(version)
    private = {
        "name": "private",
        "inputs": {"secret": PRIVATE_TYPE},
        "outputs": {},
        "run": "main:run",
        "protos": [PRIVATE_PROTO],
        "tenants": ["team-a"],
    }
    write_progdef(folder / "private", private, version)
    (folder / "private" / PRIVATE_PROTO).write_text(
        f'syntax = "proto3";\npackage {PACKAGE};\n// Only team-a knows.\n'
        "message Secret { string word = 1; }\n"
    )
    for name, tenants in (("broken", None), ("hidden_broken", ["team-a"])):
        broken = {**private, "name": name, "protos": ["b.proto"], "tenants": tenants}
        write_progdef(folder / name, broken, version)
        (folder / name / "b.proto").write_text('syntax = "proto3";\nmessage {\n')
    return folder


@pytest.fixture
def scheduler(settings: SchedulerSettings) -> Iterator[Scheduler]:
    started = Scheduler(dataclasses.replace(settings, require_consumers=False))
    started.start()
    yield started
    started.stop()


def pool_of(answer: pb.CatalogueResponse) -> descriptor_pool.DescriptorPool:
    """A descriptor pool of the answer's descriptor set alone, as another client builds it."""
    pool = descriptor_pool.DescriptorPool()
    for file in answer.descriptor_set.file:
        pool.Add(file)
    return pool


def test_the_catalogue_call_gives_progdefs_types_docs_and_descriptors(
    scheduler: Scheduler, catalogue: Path
) -> None:
    with SchedulerClient(scheduler.address) as client:
        answer = client.catalogue()
    # The scheduler runs open: its one caller is an admin and sees every progdef.
    names = [p.name for p in answer.progdefs]
    assert names == ["distance", "emit", "private", "relay"]
    distance = answer.progdefs[0]
    assert [(p.name, p.type) for p in distance.inputs] == [("points", "acme.geo.Point")]
    assert [(p.name, p.type) for p in distance.outputs] == [("km", "dagyo.types.Float64")]
    assert distance.version == load_catalogue(catalogue)["distance"].version
    assert distance.description.startswith("The distance in km")

    types = {t.typename: t for t in answer.types}
    assert {"dagyo.types.Text", "dagyo.types.Int64", "acme.geo.Point"} <= set(types)
    point = types["acme.geo.Point"]
    assert point.doc == "A point on the Earth's surface, seen at a time."
    assert point.source == "geo.proto (progdef distance)"
    assert list(point.used_by) == ["distance"]
    assert (point.fields[0].name, point.fields[0].type, point.fields[0].doc) == (
        "lat",
        "double",
        "Degrees north of the equator, -90 to 90.",
    )
    assert point.fields[2].type == "google.protobuf.Timestamp"
    schema = json.loads(point.json_schema)
    assert schema["title"] == "acme.geo.Point"
    assert schema["properties"]["at"] == {"type": "string", "format": "date-time"}
    assert types["dagyo.types.Text"].doc  # the built-ins are documented too

    # A client builds and reads items from the descriptor set alone.
    pool = pool_of(answer)
    theirs = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.geo.Point"))
    value = {"lat": 48.85, "lon": 2.35, "at": "2026-01-01T00:00:00Z", "label": "Paris"}
    item = json_format.ParseDict(value, theirs()).SerializeToString()
    ours = message_class("acme.geo.Point").FromString(item)
    assert json_format.MessageToDict(ours) == value
    text = message_factory.GetMessageClass(pool.FindMessageTypeByName("dagyo.types.Text"))
    assert (
        text(text="x").SerializeToString()
        == message_class("dagyo.types.Text")(text="x").SerializeToString()
    )
    files = [f.name for f in answer.descriptor_set.file]
    assert "google/protobuf/timestamp.proto" in files and "geo.proto" in files
    assert files.index("google/protobuf/timestamp.proto") < files.index("geo.proto")
    geo = next(f for f in answer.descriptor_set.file if f.name == "geo.proto")
    assert geo.source_code_info.location, "the doc comments travel with the set"

    assert [left.progdef for left in answer.left_out] == ["broken", "hidden_broken"]
    left = answer.left_out[0]
    assert len(left.problems) == 1 and "b.proto:2:" in left.problems[0]
    assert "Traceback" not in left.problems[0]


def test_a_tenant_sees_only_the_progdefs_and_types_it_may_use(
    settings: SchedulerSettings, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(tokens_json({token_digest(t): p for t, p in TOKENS.items()}))
    scheduler = Scheduler(
        dataclasses.replace(settings, tokens_path=str(tokens), require_consumers=False)
    )
    scheduler.start()
    try:
        with SchedulerClient(scheduler.address, token="alice") as alice:
            mine = alice.catalogue()
        with SchedulerClient(scheduler.address, token="bob") as bob:
            theirs = bob.catalogue()
    finally:
        scheduler.stop()
    assert "private" in [p.name for p in mine.progdefs]
    assert PRIVATE_TYPE in [t.typename for t in mine.types]
    assert PRIVATE_PROTO in [f.name for f in mine.descriptor_set.file]
    assert sorted(left.progdef for left in mine.left_out) == ["broken", "hidden_broken"]
    everything = str(theirs)
    assert "private" not in [p.name for p in theirs.progdefs]
    assert PACKAGE not in everything and "hidden_broken" not in everything
    assert [left.progdef for left in theirs.left_out] == ["broken"]


def test_the_scheduler_logs_a_left_out_progdef_and_a_flow_naming_it_is_told_why(
    settings: SchedulerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dagyo.scheduler"):
        scheduler = Scheduler(dataclasses.replace(settings, require_consumers=False))
        scheduler.start()
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            w.startswith("progdef broken is left out of the catalogue: ") and "b.proto:2:" in w
            for w in warnings
        ), warnings
        flow = {"name": "f", "nodes": {"b": {"progdef": "broken"}}}
        with SchedulerClient(scheduler.address) as client:
            answer = client._call(
                "Submit", pb.SubmitRequest(flow_json=json.dumps(flow), source="f.json")
            )
    finally:
        scheduler.stop()
    assert list(answer.problems) == [
        "f.json: node b: progdef 'broken' is left out of the catalogue: b.proto:2:9: Expected "
        "message name."
    ]


def dagyo(*args: str, address: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGYO_")}
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        env={**env, "DAGYO_SCHEDULER": address},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_dagyo_progdefs_and_types_remote_print_what_they_print_from_the_folder(
    scheduler: Scheduler, catalogue: Path
) -> None:
    for args in (
        ("progdefs",),
        ("types",),
        ("types", "--json"),
        ("types", "acme.geo.Point"),
        ("types", "acme.geo.Point", "--json"),
        ("types", "acme.geo.Point", "--schema"),
    ):
        remote = dagyo(*args, "--remote", address=scheduler.address)
        local = dagyo(*args, "--progdefs", str(catalogue), address=scheduler.address)
        assert remote.returncode == 0, remote.stderr
        assert local.returncode == 0, local.stderr
        assert remote.stdout == local.stdout, args
    unknown = dagyo("types", "acme.geo.Pint", "--remote", address=scheduler.address)
    assert unknown.returncode == 2
    assert "did you mean 'acme.geo.Point'?" in unknown.stderr
    assert "Traceback" not in unknown.stderr
