"""Signals: the first SIGTERM (or Ctrl-C) drains, a second one stops what still runs.

The one home of signal handling: :class:`ShutdownSignals` for an executor,
:func:`stop_signals` for a command that runs until it is stopped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any


class ShutdownSignals:
    """Turns SIGTERM/SIGINT into events: ``drain`` first, then ``force``."""

    def __init__(self) -> None:
        self.drain = threading.Event()
        self.force = threading.Event()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this (the main) thread."""
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.drain.is_set():
            self.force.set()
        self.drain.set()


@contextlib.contextmanager
def stop_signals(
    on_signal: Callable[[int], None] = lambda count: None,
    *,
    stop: threading.Event | None = None,
    unless_handled: bool = False,
) -> Iterator[threading.Event]:
    """While open, SIGINT and SIGTERM set the yielded event (and call ``on_signal(count)``).

    Args:
        stop: the event to set; a new one when None.
        unless_handled: leave alone a signal whose handler the caller installed (one that
            handles the signals itself keeps its own), and every signal off the main thread
            (where none can be handled); the event is then set only by its owner.
    """
    stop = stop or threading.Event()
    count = 0

    def handle(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        stop.set()
        on_signal(count)

    signums: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    if unless_handled:
        default = (signal.SIG_DFL, signal.default_int_handler)
        main = threading.current_thread() is threading.main_thread()
        signums = tuple(s for s in signums if main and signal.getsignal(s) in default)
    previous = {s: signal.signal(s, handle) for s in signums}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
