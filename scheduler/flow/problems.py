"""Problem lines: what is wrong with a flow, one a line, each naming its file."""

from __future__ import annotations

import json
from typing import Any

from executor.core.errors import FlowInvalid

# The option giving consts at submit; problems of such a const name it, not the flow file.
SET_OPTION = "--set"
_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


class Problems:
    """Collects problem lines, each prefixed by the file they are about.

    Call it as ``problems(where, text)``; ``where`` names the node, port or edge, or is
    empty for the flow as a whole.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []
        # False once a problem dropped part of the flow (a node, an edge), so the checks
        # against the catalogue would report its absence as more problems.
        self.model_whole = True

    def __call__(self, where: str, text: str, *, keeps_model: bool = False) -> None:
        if where.startswith(f"{SET_OPTION} "):  # about the command line, not the file
            line = f"{where}: {text}"
        else:
            line = f"{self.source}: {where}: {text}" if where else f"{self.source}: {text}"
        # One problem, one line, even when a name in the flow holds a line break.
        self.lines.append(line.translate(_ESCAPES))
        self.model_whole = self.model_whole and keeps_model

    def raise_any(self) -> None:
        """Raise FlowInvalid with every line collected, if there is any."""
        if self.lines:
            raise FlowInvalid(self.lines)


def json_excerpt(value: Any, limit: int = 60) -> str:
    """Return value as compact JSON, cut to about ``limit`` characters, for a message."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
