"""fetch_like: stands in for a call to a remote service that answers in 50 ms.

An ``async def handler`` with ``"concurrency": 64``: up to 64 items of a job wait at once,
on the executor's event loop, and their answers are sent in input order.
"""

import asyncio
import os

from executor import Context
from executor.types import Text


async def init(ctx: Context) -> None:
    """Read the delay once (FETCH_LIKE_DELAY_MS, 50 by default): a client would open here."""
    ctx.delay_s = float(os.environ.get("FETCH_LIKE_DELAY_MS", "50")) / 1000


async def handler(ctx: Context, item: Text) -> Text:
    """Wait as a remote call would, then answer."""
    await asyncio.sleep(ctx.delay_s)
    return Text(text=f"fetched {item.text}")
