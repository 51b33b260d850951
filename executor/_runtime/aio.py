"""Async progdefs: the process's event loop, and what joins a job's thread to its coroutines.

``async def handler`` / ``async def init`` / ``async def run`` run on one asyncio event loop
per process, on a thread of its own (:func:`event_loop`), for the cluster executor and
the embedded runner alike. A job keeps its thread: it starts its coroutines on the loop
(:class:`Tasks`), reads its inputs and sends its outputs, so nothing on the loop ever
waits for the broker or a full stream; an ``async def run`` asks it to, through its
:class:`Bridge`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor._runtime.inbox import Inbox


class EventLoop:
    """An asyncio event loop running forever on a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dagyo-asyncio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run a coroutine on the loop; its future can be waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the loop and wait for its result (from another thread)."""
        return self.submit(coroutine).result()


_shared: EventLoop | None = None
_shared_lock = threading.Lock()


def event_loop() -> EventLoop:
    """The process's event loop, started by the first async progdef that needs it.

    One per process, not per executor or runner object: every job's coroutines share it
    (that is the point: a waiting item costs a coroutine, not a thread), and a process
    whose progdefs are all plain starts none.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EventLoop()
        return _shared


class Tasks:
    """One job's coroutines on the loop: started from the job's thread, which ``wake`` wakes
    as each ends, and cancelled together when the job stops or panics."""

    def __init__(self, loop: EventLoop, wake: Callable[[], None]) -> None:
        self._loop = loop
        self._wake = wake
        # Touched on the loop's thread only.
        self._running: set[asyncio.Task[Any]] = set()

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start a coroutine; the future holds what it returned or raised."""
        future = self._loop.submit(self._tracked(coroutine))
        future.add_done_callback(self._woken)
        return future

    def _woken(self, _future: concurrent.futures.Future[Any]) -> None:
        self._wake()

    async def _tracked(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            return await coroutine
        finally:
            self._running.discard(task)

    def cancel(self) -> None:
        """Cancel every coroutine still running and wait until each has ended, so what it
        does on ``asyncio.CancelledError`` (its cleanup) is done when the job ends.

        Every coroutine :meth:`start` began is running by then: the loop runs its calls
        in the order they were made.
        """
        self._loop.run(self._cancel_all())

    async def _cancel_all(self) -> None:
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class Bridge:
    """The blocking calls of an ``async def run(job)``, made on the job's own thread.

    Reading a port (its inbox) and sending (a full stream waits) block, which the loop
    must never do: a coroutine awaits :meth:`call`, and the job's thread, in
    :meth:`serve`, makes the call and hands back its result or exception.
    """

    def __init__(self, loop: EventLoop, wake: Callable[[], None]) -> None:
        self._loop = loop.loop
        self._wake = wake
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]]
        self._calls = deque()

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Make ``function(*args)`` on the job's thread; return or raise what it did."""
        future = asyncio.get_running_loop().create_future()
        self._calls.append((function, args, future))
        self._wake()
        return await future

    def pending(self) -> bool:
        """True when a call waits to be made."""
        return bool(self._calls)

    def serve(self) -> None:
        """Make the calls waiting, in order, in this thread (the job's)."""
        while self._calls:
            function, args, future = self._calls.popleft()
            try:
                result = function(*args)
            except BaseException as e:  # the coroutine's to handle: Stopped, a panic…
                self._loop.call_soon_threadsafe(_settle, future, None, e)
            else:
                self._loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its coroutine was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def run_coroutine_job(coroutine: Coroutine[Any, Any, Any], inbox: Inbox, bridge: Bridge) -> None:
    """Run an ``async def run(job)``'s coroutine on the loop from the job's thread, which
    makes its blocking calls (:class:`Bridge`) until it returns.

    Raises:
        Stopped: when the job is told to stop; the coroutine is cancelled first.
        Exception: what the coroutine raised (a panic).
    """
    tasks = Tasks(event_loop(), inbox.wake)
    future = tasks.start(coroutine)

    def ready() -> bool:
        return future.done() or bridge.pending()

    try:
        while not future.done():
            inbox.take_until((), ready)
            bridge.serve()
    finally:
        if not future.done():
            tasks.cancel()
    future.result()
