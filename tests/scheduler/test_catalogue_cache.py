"""The scheduler's catalogue: loaded once, loaded again when a file under it changes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from executor.core.errors import ProgdefInvalid
from scheduler.service.catalogue import CatalogueCache
from tests.conftest import PROGDEFS


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("greet", "void_sink", "distance"):
        shutil.copytree(PROGDEFS / name, tmp_path / name, ignore=shutil.ignore_patterns("__*"))
    return tmp_path


def touched(path: Path, text: str) -> None:
    """Write ``text`` and move the file's time on, as a later edit would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_the_catalogue_is_loaded_once_while_nothing_changes(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    first = catalogue()
    assert sorted(first) == ["distance", "greet", "void_sink"]
    assert all(catalogue() is first for _ in range(20))


def test_a_new_version_file_gives_the_new_version_at_the_next_call(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    before = catalogue()["greet"].version
    touched(folder / "greet" / "VERSION", "v2\n")
    assert catalogue()["greet"].version == "v2" != before


def test_an_edited_progdef_json_is_read_again(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    assert catalogue()["greet"].description != "Greets."
    path = folder / "greet" / "progdef.json"
    document = json.loads(path.read_text())
    touched(path, json.dumps({**document, "description": "Greets."}))
    assert catalogue()["greet"].description == "Greets."


def test_an_edited_proto_gives_a_new_version(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    before = catalogue()["distance"].version
    (proto,) = (folder / "distance").glob("*.proto")
    touched(proto, proto.read_text() + "\n// edited\n")
    assert catalogue()["distance"].version != before


def test_a_progdef_folder_added_or_removed_is_seen(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    assert "count" not in catalogue()
    shutil.copytree(PROGDEFS / "count", folder / "count", ignore=shutil.ignore_patterns("__*"))
    assert "count" in catalogue()
    shutil.rmtree(folder / "greet")
    assert "greet" not in catalogue()


def test_a_broken_edit_is_refused_until_it_is_fixed(folder: Path) -> None:
    catalogue = CatalogueCache(folder)
    path = folder / "greet" / "progdef.json"
    good = path.read_text()
    catalogue()
    touched(path, '{"name": "greet",')
    with pytest.raises(ProgdefInvalid, match="greet/progdef.json"):
        catalogue()
    with pytest.raises(ProgdefInvalid, match="greet/progdef.json"):
        catalogue()
    touched(path, good)
    assert "greet" in catalogue()


def test_a_catalogue_laid_out_as_a_config_map_volume_sees_its_update(tmp_path: Path) -> None:
    # A ConfigMap volume: each folder a link through ..data to a folder swapped per update.
    mount = tmp_path / "mount"
    mount.mkdir()
    first = mount / "..2024_01"
    shutil.copytree(PROGDEFS / "greet", first / "greet", ignore=shutil.ignore_patterns("__*"))
    (first / "greet" / "VERSION").write_text("v1\n")
    (mount / "..data").symlink_to(first.name)
    (mount / "greet").symlink_to("..data/greet")
    catalogue = CatalogueCache(mount)
    assert catalogue()["greet"].version == "v1"
    second = mount / "..2024_02"
    shutil.copytree(first, second)
    touched(second / "greet" / "VERSION", "v2\n")
    (mount / "..data_tmp").symlink_to(second.name)
    (mount / "..data_tmp").replace(mount / "..data")
    shutil.rmtree(first)
    assert catalogue()["greet"].version == "v2"
