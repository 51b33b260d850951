"""One broker connection owned by one I/O thread, with thread-safe hand-off.

pika connections are not thread-safe. An AmqpThread owns a BlockingConnection and is the
only thread that touches it; other threads hand it work with :meth:`AmqpThread.call`
(wait for the result) or :meth:`AmqpThread.submit` (fire and forget), which go through
``add_callback_threadsafe``. When the connection is lost the thread reports it, then
reconnects (a new connection, never a repaired one) for as long as the process runs,
waiting RECONNECT_DELAY_S after the first failed attempt and twice as long after each
next one, up to RECONNECT_MAX_DELAY_S; ``connected`` is clear meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pika
import pika.exceptions

from executor.core.connection import CONNECTION_ERRORS, broker_node, connect
from executor.core.constants import RECONNECT_DELAY_S
from executor.core.errors import BrokerError, BrokerUnavailable
from executor.core.settings import reconnect_max_delay_s

log = logging.getLogger("dagyo.amqp")
T = TypeVar("T")
# connect and what it raises are this module's too, for the callers that import them here.
__all__ = ["CONNECTION_ERRORS", "AmqpThread", "broker_node", "connect", "reconnect"]


class AmqpThread:
    """The I/O thread of one process: owns its connection and runs every AMQP call.

    Args:
        url: the broker URL.
        on_connect: called on the I/O thread with each new connection (declare topology,
            start consumers).
        on_disconnect: called on the I/O thread when the connection is lost.
        reconnect_delay_s: the wait before the first reconnection attempt; it doubles
            after each failed one.
        max_delay_s: the longest wait between attempts (None: DAGYO_RECONNECT_MAX_DELAY_S,
            else RECONNECT_MAX_DELAY_S).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        on_connect: Callable[[pika.BlockingConnection], None],
        on_disconnect: Callable[[Exception], None] = lambda e: None,
        reconnect_delay_s: float = RECONNECT_DELAY_S,
        max_delay_s: float | None = None,
    ) -> None:
        self.url = url
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._max_delay_s = reconnect_max_delay_s() if max_delay_s is None else max_delay_s
        self._delay_s = min(reconnect_delay_s, self._max_delay_s)
        self._connection: pika.BlockingConnection | None = None
        self._calls: list[tuple[Callable[[], Any], Future[Any] | None]] = []
        self._calls_lock = threading.Lock()
        self._closing = threading.Event()
        self.connected = threading.Event()
        self.failed: BaseException | None = None
        # The broker node (host:port, see broker_node) of the current connection, and of the
        # one lost last: what a message about a lost connection names.
        self.node = ""
        self.lost_node = ""
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the thread.

        Raises:
            BrokerUnavailable: when the first connection fails.
        """
        self._connection = connect(self.url)
        self.node = broker_node(self._connection)
        self._thread.start()
        self.call(lambda: self._on_connect(self.connection()))
        self.connected.set()

    def close(self) -> None:
        """Close the connection and end the thread (idempotent)."""
        self._closing.set()
        self.submit(lambda: None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(10)

    @property
    def alive(self) -> bool:
        """True while the thread runs (connected, or reconnecting)."""
        return self._thread.is_alive()

    def is_current(self, connection: pika.BlockingConnection) -> bool:
        """True when ``connection`` is the open, current one (not one lost earlier)."""
        return connection is self._connection and bool(connection and connection.is_open)

    @property
    def in_io_thread(self) -> bool:
        """True when called on the I/O thread itself."""
        return threading.current_thread() is self._thread

    # --- hand-off --------------------------------------------------------------------------

    def call(self, function: Callable[[], T], *, timeout: float | None = 30.0) -> T:
        """Run ``function`` on the I/O thread and return its result.

        Raises:
            BrokerError: when the connection is lost before it ran, or it timed out.
            Exception: whatever ``function`` raised.
        """
        if self.in_io_thread:
            return function()
        future: Future[T] = Future()
        self._enqueue(function, future)
        try:
            return future.result(timeout)
        except TimeoutError as e:
            raise BrokerError(f"the broker did not answer within {timeout} s") from e

    def submit(self, function: Callable[[], Any]) -> None:
        """Run ``function`` on the I/O thread soon; errors are logged, not raised."""
        if self.in_io_thread:
            self._run(function, None)
        else:
            self._enqueue(function, None)

    def _enqueue(self, function: Callable[[], Any], future: Future[Any] | None) -> None:
        with self._calls_lock:
            self._calls.append((function, future))
            connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(self._run_calls)
            except Exception:  # closed between the check and the call: the loop will fail it
                pass

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for index, (function, future) in enumerate(calls):
            try:
                self._run(function, future)
            except CONNECTION_ERRORS:
                for _, later in calls[index + 1 :]:
                    if later is not None:
                        later.set_exception(BrokerError("the broker connection was lost"))
                raise

    @staticmethod
    def _run(function: Callable[[], Any], future: Future[Any] | None) -> None:
        try:
            result = function()
        except CONNECTION_ERRORS:
            if future is not None:
                future.set_exception(BrokerError("the broker connection was lost"))
            raise
        except BaseException as e:
            if future is None:
                log.exception("AMQP call failed")
            else:
                future.set_exception(e)
        else:
            if future is not None:
                future.set_result(result)

    def _fail_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for _, future in calls:
            if future is not None:
                future.set_exception(BrokerError("the broker connection was lost"))

    def connection(self) -> pika.BlockingConnection:
        """The current connection, for work on the I/O thread (open channels, timers).

        Raises:
            BrokerError: while there is none.
        """
        if self._connection is None:
            raise BrokerError("not connected to the broker")
        return self._connection

    # --- the loop --------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # a bug, not a lost connection: say it, end the thread
            self.failed = e
            log.exception("the broker I/O thread failed")
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._serve()
            except CONNECTION_ERRORS as e:
                self.connected.clear()
                lost, self._connection = self._connection, None
                self.lost_node = self.node
                if lost is not None:
                    # A client-side error (no free channel) leaves it open, holding its
                    # exclusive queues: a new connection could not declare them again.
                    _close_quietly(lost)
                self._fail_calls()
                if self._closing.is_set():
                    break
                log.warning("lost the broker connection (%r); reconnecting", e)
                self._on_disconnect(e)
                if not self._reconnect():
                    break

    def _serve(self) -> None:
        connection = self.connection()
        while not self._closing.is_set():
            try:
                connection.process_data_events(time_limit=0.2)
            except ValueError as e:
                # pika raises "Timeout closed before call" when the broker closed the
                # connection while it armed its timer: that is a lost connection, not a bug.
                if connection.is_open:
                    raise
                raise pika.exceptions.ConnectionClosed(320, f"the connection closed: {e}") from e
            self._run_calls()

    def _reconnect(self) -> bool:
        """Reconnect until it works (True) or the thread is closing (False); never gives up."""
        connection = reconnect(
            self.url,
            closing=self._closing,
            delay_s=self._delay_s,
            max_delay_s=self._max_delay_s,
            set_up=self._set_up,
        )
        if connection is None:
            return False
        self.connected.set()
        return True

    def _set_up(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection
        self.node = broker_node(connection)
        try:
            self._on_connect(connection)
        except BaseException:
            self._connection = None
            raise

    def _shutdown(self) -> None:
        self.connected.clear()
        self._fail_calls()
        connection, self._connection = self._connection, None
        if connection is not None:
            _close_quietly(connection)


def reconnect(
    url: str,
    *,
    closing: threading.Event,
    delay_s: float,
    max_delay_s: float,
    set_up: Callable[[pika.BlockingConnection], None] = lambda connection: None,
    label: str = "",
) -> pika.BlockingConnection | None:
    """Connect again after a lost connection, until it works; the one reconnection loop.

    Waits ``delay_s`` before the first attempt and twice as long after each failed one, up
    to ``max_delay_s``, and never gives up: a broker may be down for long.

    Args:
        closing: set to give up; the wait ends at once.
        set_up: called with each new connection before it is returned (declares, consumers);
            when the broker closes the connection or a channel under it, that connection
            is dropped and the next attempt follows.
        label: said before each line this logs (which connection).

    Returns:
        The new connection, set up; None once ``closing`` is set.
    """
    attempt = 0
    while not closing.wait(delay_s):
        attempt += 1
        try:
            connection = connect(url)
        except BrokerUnavailable as e:
            delay_s = min(delay_s * 2, max_delay_s)
            log.warning(
                "%sreconnect attempt %d failed (%s); next in %g s",
                label,
                attempt,
                e.reason,
                delay_s,
            )
            continue
        try:
            set_up(connection)
        except (*CONNECTION_ERRORS, pika.exceptions.AMQPError) as e:
            # A broker still starting may close a channel or the connection under the
            # set-up: drop this connection and try again later.
            log.warning("%sreconnect attempt %d failed while setting up (%r)", label, attempt, e)
            _close_quietly(connection)
            delay_s = min(delay_s * 2, max_delay_s)
            continue
        log.info("%sreconnected to the broker after %d attempts", label, attempt)
        return connection
    return None


def _close_quietly(connection: pika.BlockingConnection) -> None:
    if connection.is_open:
        try:
            connection.close()
        except Exception:  # already going away; nothing left to save
            pass
