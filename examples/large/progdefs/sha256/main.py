"""sha256: the SHA-256 of each Bytes item."""

import hashlib

from executor import Context
from executor.types import Bytes, Text


def handler(ctx: Context, item: Bytes) -> Text:
    """The item's SHA-256, hex."""
    return Text(text=hashlib.sha256(item.data).hexdigest())
