"""Waiting on events: :func:`eventually` polls a condition until it holds.

Tests wait for what they need to see (a record's state, a queue gone, a line in a log), not
for a length of time. The timeout only catches a hang: a test goes on the moment its
condition holds, so a loaded machine makes it slower, never wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough for a cluster on a loaded two-core machine; a test passes as soon as it can.
WAIT_S = 30.0
POLL_S = 0.05


def eventually(
    condition: Callable[[], T],
    timeout: float = WAIT_S,
    *,
    until: Callable[[T], object] | None = None,
    what: str | Callable[[], str] = "",
    poll: float = POLL_S,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until its answer holds, and return that answer.

    Args:
        condition: asks once; a true answer (True, a record, a match…) ends the wait.
        timeout: seconds before the test fails.
        until: when given, an answer holds when ``until(answer)`` is true (a record in a
            state), and the failure message shows the last answer.
        what: what the test waits for, for the failure message; a callable is asked only
            then (a log's text).
        poll: seconds between two calls.
        ignoring: exceptions that mean "not yet" (a server still starting) rather than a
            failure; the last one is chained to the timeout's error.

    Raises:
        AssertionError: ``not within 30 s: <what>`` when the timeout passes first.

    Example:
        >>> eventually(lambda: [3], until=lambda answer: answer[0] > 2, what="a big number")
        [3]
    """
    if isinstance(timeout, str):
        raise TypeError(f"eventually(condition, timeout, what={timeout!r}): name what= by keyword")
    holds = until or bool
    deadline = time.monotonic() + timeout
    last: list[T] = []
    last_error: BaseException | None = None
    while True:
        try:
            answer = condition()
        except ignoring as e:
            last_error = e
        else:
            if holds(answer):
                return answer
            last[:] = [answer]
        if time.monotonic() >= deadline:
            text = (what() if callable(what) else what) or repr(condition)
            if until is not None and last:
                text += f"; the last answer:\n{str(last[0])[:4000]}"
            raise AssertionError(f"not within {timeout:g} s: {text}") from last_error
        time.sleep(poll)
