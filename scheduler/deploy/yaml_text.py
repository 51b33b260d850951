"""Rendered objects as the YAML ``dagyo deploy --dry-run`` prints: no anchors, number-like
strings quoted, multi-line strings as blocks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

# Strings a YAML 1.2 reader (kubectl's) would take for numbers, e.g. a version "1234e567".
_NUMBER_LIKE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^0[xob]")


class _Dumper(yaml.SafeDumper):
    """Writes no anchors, quotes number-like strings, and multi-line strings as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never write an anchor: kubectl users read every object on its own."""
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else '"' if _NUMBER_LIKE.match(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Return objects as one multi-document YAML stream, keys in rendering order."""
    return yaml.dump_all(
        [dict(obj) for obj in objects],
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        explicit_start=True,
    )
