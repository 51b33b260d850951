"""JSON as dagyo reads files people write: no repeated keys, no NaN, no endless nesting, no
lone surrogate."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from executor.core.errors import JsonProblems

# A lone surrogate, raw or as a JSON escape (a pair of escapes decodes to one character, so
# only a lone one is left in the parsed text): no UTF-8 encodes it, so no protobuf string
# and no answer could carry it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# The places named when many strings hold a lone surrogate.
MAX_SURROGATE_PLACES = 10


def parse_strict(text: str | bytes, *, source: str) -> Any:
    """Parse JSON text, refusing what ``json.loads`` lets through silently.

    Two equal keys in one object (``json.loads`` keeps the last: two nodes named alike
    would vanish into one), ``NaN`` and ``Infinity`` (not JSON, and no bound holds them), a
    number out of a double's range (``1e400``, which would read as Infinity), bytes that are
    not UTF-8, nesting too deep to read, and a key or text holding a lone surrogate
    (``"\\ud800"``: no character, and no UTF-8 encodes it) are each a problem naming
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

    def finite(literal: str) -> float:
        number = float(literal)
        if math.isinf(number):  # 1e400: json.loads would make it Infinity
            raise JsonProblems(
                [
                    f"{source}: {literal[:40]} is a number out of range: write a number between "
                    "-1.7e308 and 1.7e308"
                ]
            )
        return number

    try:
        data = json.loads(
            text, object_pairs_hook=unique_keys, parse_constant=no_constant, parse_float=finite
        )
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
    if _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text):
        places = _lone_surrogates(data)
        if places:
            raise JsonProblems(
                [
                    f"{source}: {place}holds a lone surrogate, which is no character: write the "
                    "character itself, or both halves of a surrogate pair"
                    for place in places
                ]
            )
    return data


def _lone_surrogates(data: Any) -> list[str]:
    """Where keys and texts of ``data`` hold a lone surrogate: ``consts[0].values[2]: the
    text "a\\ud800" ``, at most MAX_SURROGATE_PLACES of them."""
    places: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack and len(places) < MAX_SURROGATE_PLACES:
        value, path = stack.pop()
        at = f"{path}: " if path else ""
        if isinstance(value, str):
            if _SURROGATE.search(value):
                places.append(f"{at}the text {_shown(value)} ")
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if _SURROGATE.search(key):
                    places.append(f"{at}the key {_shown(key)} ")
                step = f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{_shown(key)}]"
                stack.append((item, (path + step).lstrip(".")))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return places[:MAX_SURROGATE_PLACES]


def _shown(text: str, limit: int = 60) -> str:
    """A key or text for a message: quoted, each surrogate escaped, cut to about ``limit``."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return '"' + cut.encode("utf-8", "backslashreplace").decode("utf-8") + '"'
