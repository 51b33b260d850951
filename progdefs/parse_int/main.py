"""parse_int: parses each text as a base-10 integer; an unparsable text goes to `errors`."""

from executor import Context
from executor.types import Int64, Text


def handler(ctx: Context, item: Text) -> Int64:
    """Parse one text (surrounding whitespace allowed); a ValueError makes it an Error."""
    return Int64(value=int(item.text, 10))
