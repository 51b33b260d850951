"""Inputs that bench/fuzz.py found crashing a decoder; each must now be a clear DagyoError."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.core.errors import DagyoError, FlowInvalid, ProgdefInvalid
from executor.core.progdef import load_catalogue, load_progdef
from scheduler.flow.check import check_flow
from scheduler.flow.parse import parse_flow

ROOT = Path(__file__).resolve().parents[2]


def test_a_const_key_with_a_lone_surrogate_is_a_flow_error() -> None:
    # JSON escapes can spell a lone surrogate, which protobuf cannot look a field up by.
    text = (
        '{"name": "boom", "nodes": {"fuse": {"progdef": "explode"},'
        ' "total": {"progdef": "count"}},'
        ' "edges": [{"from": "fuse.items", "to": "total.items"}],'
        ' "consts": [{"to": "fuse.items", "values": [{"te\\udc80xt": "ok"}]}],'
        ' "exports": {"total": "total.total"}}'
    )
    with pytest.raises(FlowInvalid, match=r'consts\[0\]\.values\[0\]: the key "te\\udc80xt"'):
        check_flow(parse_flow(text), load_catalogue(ROOT / "progdefs"), source="boom.json")


def test_a_progdef_json_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    text = (ROOT / "progdefs" / "greet" / "progdef.json").read_bytes()
    (tmp_path / "progdef.json").write_bytes(text.replace(b"Prepends", b"Pre\x80pends"))
    with pytest.raises(ProgdefInvalid, match="progdef.json") as caught:
        load_progdef(tmp_path)
    assert isinstance(caught.value, DagyoError)
    assert "UTF-8" in str(caught.value)
