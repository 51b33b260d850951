"""Which nodes of a checked flow are cacheable, and the key their cached results go under.

A node is *cacheable* when its progdef is deterministic and each of its inputs comes from a
const or from an output of a cacheable node. Its key is a hash of its progdef's version and,
for each input port by name, the port's bound typename and either the const's items in
canonical form or the upstream node's key and output port. So a change of code, metadata,
image or of any const upstream changes the key, and no cache version is kept by hand
(docs/cache.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from executor.core.errors import UnknownType
from executor.core.types import message_class
from scheduler.flow.model import IN, CheckedFlow, Endpoint

# Bumped only when the key's own layout changes, so old entries are never read as new ones.
KEY_LAYOUT = 1


def cache_keys(checked: CheckedFlow) -> dict[str, str]:
    """Return node name -> cache key, for every cacheable node of the flow.

    Nodes left out are not cacheable: their progdef is not deterministic, or something
    upstream of them is not.

    Example:
        In the hello flow (``source -> greet -> void_sink``, a const on ``source``) every
        node is cacheable, and changing the const changes all three keys.
    """
    keys: dict[str, str] = {}
    for node in checked.order:
        progdef = checked.progdefs[node]
        if not progdef.deterministic:
            continue
        inputs: dict[str, Any] = {}
        for port in sorted(progdef.inputs):
            target = Endpoint(node, port)
            typename = checked.port_types.get((node, IN, port), "")
            source = checked.source_of(target)
            if source is None:
                items = checked.const_items.get(target, ())
                inputs[port] = {"type": typename, "const": _canonical(typename, items)}
            elif source.node in keys:
                inputs[port] = {"type": typename, "from": keys[source.node], "port": source.port}
            else:
                break
        else:
            keys[node] = _digest(
                {
                    "layout": KEY_LAYOUT,
                    "progdef": progdef.name,
                    "version": progdef.version,
                    "inputs": inputs,
                }
            )
    return keys


def _canonical(typename: str, items: tuple[bytes, ...]) -> list[str]:
    """The const's items as hex of their deterministic protobuf serialization (map fields
    in key order), so two spellings of one value give one key."""
    try:
        cls = message_class(typename)
    except UnknownType:
        return [item.hex() for item in items]
    canonical = []
    for item in items:
        message = cls()
        message.ParseFromString(item)
        canonical.append(message.SerializeToString(deterministic=True).hex())
    return canonical


def _digest(document: dict[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
