"""relay: passes every item on unchanged; panics on the item 'panic'."""

from executor import Context
from executor.types import Text


def handler(ctx: Context, item: Text) -> Text:
    """Pass the item on; raise from conformance_panic on the item 'panic'."""
    if item.text == "panic":
        conformance_panic()
    return item


def conformance_panic() -> None:
    """The author's frame a panic's traceback must show."""
    raise RuntimeError("asked to panic")
