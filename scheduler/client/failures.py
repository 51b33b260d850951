"""Following failure reports live, as they are published on the ``dagyo.failures`` exchange.

``dagyo failures --follow`` uses it::

    follower = FailureFollower(queue_url, flow_id=flow_id)
    follower.connect()
    try:
        follower.follow(print, stop=stop, past=read_past_failures)
    finally:
        follower.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import DecodeError

from executor.core.constants import FAILURES_EXCHANGE
from executor.core.errors import BrokerUnavailable
from executor.pb.dagyo.v1.failure_pb2 import FailureReport

log = logging.getLogger("dagyo.failures")

# How long one wait for broker traffic lasts: how soon a set ``stop`` is noticed.
POLL_S = 0.25


def _key(report: FailureReport) -> tuple[str, str, str, str]:
    return (report.flow_id, report.node, report.executor, report.error)


class FailureFollower:
    """One broker connection following the failure reports of one flow, or of every flow.

    Args:
        queue_url: the broker.
        flow_id: only this flow's reports; empty for every flow's.
    """

    def __init__(self, queue_url: str, *, flow_id: str = "") -> None:
        self.queue_url = queue_url
        self.flow_id = flow_id
        self._connection: Any = None

    def connect(self) -> None:
        """Open the broker connection.

        Raises:
            BrokerUnavailable: naming the URL and how to start a broker.
        """
        from executor.core.amqp import connect

        self._connection = connect(self.queue_url)

    def follow(
        self,
        on_report: Callable[[FailureReport], None],
        *,
        stop: threading.Event,
        past: Callable[[], Iterable[FailureReport]] = lambda: (),
        on_undecodable: Callable[[str], None] | None = None,
    ) -> None:
        """Pass each report to ``on_report``: first ``past()``, then each new one, until ``stop``.

        Args:
            on_report: called with each report, once.
            stop: following ends once it is set.
            past: the reports recorded so far (say, from the scheduler); it is called once
                the queue is bound, so no report falls between the past and the live ones,
                and a live report equal to a past one is not passed again.
            on_undecodable: called with the routing key of a message that is not a
                FailureReport; by default a warning is logged.

        Raises:
            BrokerUnavailable: when the connection is lost.
        """
        from executor.core.amqp import CONNECTION_ERRORS

        shown: set[tuple[str, str, str, str]] = set()

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            try:
                report = FailureReport.FromString(body)
            except DecodeError:
                (on_undecodable or _log_undecodable)(method.routing_key)
                return
            if _key(report) not in shown:
                on_report(report)

        if self._connection is None:
            self.connect()
        connection = self._connection
        try:
            channel = connection.channel()
            channel.exchange_declare(FAILURES_EXCHANGE, exchange_type="topic", durable=True)
            # Our own queue, gone with us: every watcher sees every report (docs/protocol.md).
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(
                queue, FAILURES_EXCHANGE, routing_key=f"*.{self.flow_id}" if self.flow_id else "#"
            )
            # Bound before reading the past, so nothing falls between the two; the overlap is
            # skipped by `shown`.
            for report in past():
                shown.add(_key(report))
                on_report(report)
            channel.basic_consume(queue, on_message, auto_ack=True)
            while not stop.is_set():
                connection.process_data_events(time_limit=POLL_S)
        except CONNECTION_ERRORS as e:
            raise BrokerUnavailable(self.queue_url, "the connection was lost") from e

    def close(self) -> None:
        """Close the connection (idempotent); the follower's queue goes with it."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


def _log_undecodable(routing_key: str) -> None:
    log.warning(
        "skipped a message on %s that is not a FailureReport (routing key %s)",
        FAILURES_EXCHANGE,
        routing_key,
    )
