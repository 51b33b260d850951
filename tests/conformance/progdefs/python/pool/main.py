"""pool: passes items on after a delay of their own, up to 8 at once; an item starting with
'bad' fails to the error port."""

import asyncio

from executor import Context
from executor.types import Text


async def handler(ctx: Context, item: Text) -> Text:
    """Wait the item's delay (its last digit: 0-9 times 3 ms), then pass it on; raise from
    conformance_reject on an item starting with 'bad'."""
    await asyncio.sleep(int(item.text[-1]) * 0.003)
    if item.text.startswith("bad"):
        conformance_reject(item.text)
    return item


def conformance_reject(text: str) -> None:
    """The author's frame an Error's traceback must show."""
    raise ValueError(f"rejected {text}")
