"""strict: passes items on; an item starting with 'bad' fails to the error port."""

from executor import Context
from executor.types import Text


def handler(ctx: Context, item: Text) -> Text:
    """Pass the item on; raise from conformance_reject on an item starting with 'bad'."""
    if item.text.startswith("bad"):
        conformance_reject(item.text)
    return item


def conformance_reject(text: str) -> None:
    """The author's frame an Error's traceback must show."""
    raise ValueError(f"rejected {text}")
