"""make_bytes: for each size received, one Bytes item of that many deterministic bytes."""

from executor import Context
from executor.types import Bytes, Int64

# The bytes repeat this block: 0, 1, …, 255, then 0, 1, … again.
_BLOCK = bytes(range(256)) * 4096


def handler(ctx: Context, item: Int64) -> Bytes:
    """``item.value`` bytes: byte i is i % 256."""
    size = item.value
    data = _BLOCK * (size // len(_BLOCK)) + _BLOCK[: size % len(_BLOCK)]
    return Bytes(data=data)
