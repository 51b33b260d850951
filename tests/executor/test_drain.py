"""The one signal helper: a command's SIGTERM and Ctrl-C set its stop event, and a caller
that handles the signals itself keeps its own handlers."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from executor.core.drain import stop_signals


def test_sigterm_sets_the_stop_event_and_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    counts: list[int] = []
    with stop_signals(counts.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
    assert counts == [1, 2]
    assert signal.getsignal(signal.SIGTERM) == before


def test_unless_handled_leaves_a_callers_own_handler_and_sets_the_given_event() -> None:
    heard: list[int] = []

    def own(signum: int, frame: Any) -> None:
        heard.append(signum)

    previous = signal.signal(signal.SIGTERM, own)
    try:
        given = threading.Event()
        with stop_signals(stop=given, unless_handled=True) as stop:
            assert stop is given
            assert signal.getsignal(signal.SIGTERM) is own
            os.kill(os.getpid(), signal.SIGTERM)
            assert not stop.is_set() and heard == [signal.SIGTERM]
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_unless_handled_off_the_main_thread_installs_nothing() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with stop_signals(unless_handled=True) as stop:
                assert not stop.is_set()
        except BaseException as e:  # signal.signal raises ValueError off the main thread
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors == []
