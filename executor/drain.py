"""Signals: the first SIGTERM (or Ctrl-C) drains, a second one stops what still runs."""

from __future__ import annotations

import signal
import threading
from types import FrameType


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
