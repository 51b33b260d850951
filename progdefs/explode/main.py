"""explode: passes items on; panics on an item that starts with 'panic'."""

from executor import Context
from executor.types import Text


def handler(ctx: Context, item: Text) -> Text:
    """Pass the item on, or panic when it starts with 'panic'."""
    if item.text.startswith("panic"):
        raise RuntimeError(f"explode: item {item.text!r} starts with 'panic'")
    return item
