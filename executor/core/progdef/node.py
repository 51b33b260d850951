"""The rules of a node progdef's code (``"runtime": "node"``): ``run`` and ``init`` name an
ES module of its build context, JavaScript or TypeScript, and an export of it
(``FILE:EXPORT``, e.g. ``main.js:handler`` or ``main.ts:handler``).

Where the code is there (a folder holding JavaScript modules; a scheduler's catalogue holds
none), the catalogue checks the export without running Node.js: it reads the module's text for an
``export`` of that name (a function, class or binding declared with ``export``, or a name in
an ``export { … }`` list), so a catalogue loads where Node.js is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

RUNTIMES = ("python", "node")
NODE_TARGET = re.compile(
    r"^(?P<file>[A-Za-z0-9_][A-Za-z0-9_./-]*\.m?[jt]s):(?P<name>[A-Za-z_$][\w$]*)$"
)


def node_target_problem(target: str, context_dir: Path | None, key: str = "run") -> str:
    """What is wrong with a node progdef's ``run`` (or ``init``) target; empty: nothing.

    Args:
        context_dir: the image build context the file is relative to; None skips the file
            checks (a progdef loaded from a mapping).
    """
    match = NODE_TARGET.fullmatch(target) if isinstance(target, str) else None
    if match is None or ".." in match["file"].split("/"):
        return (
            f"{key} {target!r} must be 'FILE:EXPORT' for runtime node, e.g. 'main.js:handler' "
            "(an ES module of the progdef's folder and the name it exports)"
        )
    if context_dir is None:
        return ""
    path = context_dir / match["file"]
    if not path.is_file():
        if not has_code(context_dir):
            return ""  # a catalogue without the code (a scheduler's): nothing to check
        return f"{key} {target!r}: no file {match['file']} in {context_dir}"
    if not exports(path.read_text(errors="replace"), match["name"]):
        return (
            f"{key} {target!r}: {match['file']} does not export {match['name']}: write "
            f"'export function {match['name']}(…)' (or 'export async function')"
        )
    return ""


def has_code(context_dir: Path) -> bool:
    """Whether a build context holds JavaScript or TypeScript modules (a scheduler's
    catalogue does not)."""
    return context_dir.is_dir() and any(
        path.suffix in (".js", ".mjs", ".ts", ".mts") for path in context_dir.iterdir()
    )


def exports(source: str, name: str) -> bool:
    """Whether an ES module's text exports ``name``."""
    word = re.escape(name)
    declared = rf"\bexport\s+(?:async\s+)?(?:function\s*\*?|class|const|let|var)\s*{word}(?![\w$])"
    if re.search(declared, source):
        return True
    for names in re.findall(r"\bexport\s*\{([^}]*)\}", source):
        for entry in names.split(","):
            exported = entry.split(" as ")[-1].strip()
            if exported == name:
                return True
    return False
