"""The clock that paces a loop: the system's, or a virtual one whose time moves only in its
waits.

A component that samples or beats at an interval (the scheduler's queue sampler, the
executor's heartbeats) reads the time and waits through a :class:`Clock` it is given. The
system clock is the default; :class:`VirtualClock` lets its tests count what happens per
interval in the component's own seconds, with no wall-clock window to race against.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What a paced loop asks of time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds passed; return whether it is set."""
        ...


class SystemClock:
    """The system's monotonic clock; waits block on the event."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)``."""
        return event.wait(timeout)


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """A clock whose time moves only when a wait on it ends unset: each such wait moves it
    on by its whole timeout at once.

    A loop paced by it runs as fast as its work, and what it does at each moment of its own
    time is the same on every run: a test counts beats or samples per virtual second.

    Example:
        >>> clock = VirtualClock()
        >>> clock.wait(threading.Event(), 0.25), clock.monotonic()
        (False, 0.25)
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The virtual time."""
        with self._lock:
            return self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Return True at once when ``event`` is set; else move the time on by ``timeout``."""
        if event.is_set():
            return True
        with self._lock:
            self._now += max(0.0, timeout)
        return event.is_set()
