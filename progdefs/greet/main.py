"""greet: prepends 'hello ' to every name (function style)."""

from executor import Context
from executor.types import Text


def handler(ctx: Context, item: Text) -> Text:
    """Greet one name."""
    return Text(text="hello " + item.text)
