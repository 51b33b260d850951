"""JSON as dagyo reads files people write: no repeated keys, no NaN, no endless nesting."""

from __future__ import annotations

import json
import re
from typing import Any

from executor.errors import JsonProblems


def parse_strict(text: str | bytes, *, source: str) -> Any:
    """Parse JSON text, refusing what ``json.loads`` lets through silently.

    Two equal keys in one object (``json.loads`` keeps the last: two nodes named alike
    would vanish into one), ``NaN`` and ``Infinity`` (not JSON, and no bound holds them),
    bytes that are not UTF-8, and nesting too deep to read are each a problem naming
    ``source``.

    Raises:
        JsonProblems: every problem found, each line starting with ``source``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonProblems(
                [f"{source}: not UTF-8 text (byte {e.start}): save the file as UTF-8"]
            ) from None
    duplicates: list[str] = []

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result and key not in duplicates:
                duplicates.append(key)
            result[key] = value
        return result

    def no_constant(name: str) -> Any:
        # json.loads does not say where the constant is: name the key that holds it.
        found = re.search(r'"((?:[^"\\]|\\.)*)"\s*:\s*-?' + name, text)
        key = f"{found.group(1)}: " if found else ""
        raise JsonProblems([f"{source}: {key}{name} is not a JSON number: write a finite number"])

    try:
        data = json.loads(text, object_pairs_hook=unique_keys, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise JsonProblems([f"{source}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}"]) from None
    except RecursionError:
        raise JsonProblems([f"{source}: malformed JSON: nested too deeply"]) from None
    except JsonProblems:
        raise
    except ValueError as e:  # e.g. a number too long to convert
        raise JsonProblems([f"{source}: malformed JSON: {e}"]) from None
    if duplicates:
        raise JsonProblems(
            [
                f"{source}: key {key!r} appears twice in one object; rename or remove one"
                for key in duplicates
            ]
        )
    return data
