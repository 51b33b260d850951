"""The scheduler's side of RabbitMQ: one connection, owned by one I/O thread.

Every AMQP call runs on the I/O thread of an :class:`executor.core.amqp.AmqpThread`; other
threads hand work to it (``call`` waits, ``submit`` does not), and the consumers'
callbacks run on it. The scheduler uses two channels on that connection:

* the *work* channel, in publisher-confirm mode, publishes stop signals and failure
  reports and carries every consumer (its heartbeats queue, the events and failures queues
  of the shards it owns, each of its flows' export queues). A broker error on it (it
  should never have one) is treated as a lost connection;
* the *probe* channel makes passive declares, which the broker answers with a channel
  error when the queue does not exist; it is simply reopened after each such answer.

After a lost connection the thread reconnects (a new connection, retried with capped
exponential backoff for as long as the scheduler runs: see executor.core.amqp), calls
``on_connect`` again so the lifecycle can check its flows, then consumes its heartbeats
and its shards' queues again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import pika
import pika.exceptions
from google.protobuf.message import Message
from pika.adapters.blocking_connection import BlockingChannel

from executor.core.amqp import AmqpThread
from executor.core.constants import (
    EVENTS_QUEUE,
    FAILURES_EXCHANGE,
    FAILURES_QUEUE,
    PROTOBUF_CONTENT_TYPE,
    SCHEDULER_APP_ID,
    STOP_EXCHANGE,
    failure_key,
)
from executor.core.errors import BrokerError, redact_url
from executor.core.settings import queue_type_of
from executor.core.topology import QueueType, declare_topology
from executor.pb.dagyo.v1.events_pb2 import Stop
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.service.broker_queues import QueueOperations
from scheduler.service.broker_standing import (
    EXPORT_PREFETCH_FRAMES,
    StandingQueues,
    _Standing,
)
from scheduler.service.channels import JobsChannel, ProbeChannel, QueueLanes
from scheduler.service.consumers import Consumers, Handler

log = logging.getLogger("dagyo.scheduler.broker")


JOB_PROPERTIES = pika.BasicProperties(
    content_type=PROTOBUF_CONTENT_TYPE, type="dagyo.v1.Job", app_id=SCHEDULER_APP_ID
)


class Broker(StandingQueues, QueueOperations):
    """The scheduler's AMQP operations, all run on one I/O thread.

    Args:
        url: the broker URL.
        on_connect: called on the I/O thread after every reconnection (not the first
            connection) and after the broker closed the work channel and it was opened
            again, before the events queue is consumed again: every flow consumer is gone.
        on_disconnect: called on the I/O thread when the connection is lost.
        queue_type: the type of the durable queues it declares (None: DAGYO_QUEUE_TYPE, else
            as ``url`` lists one broker URL or several; executor.core.settings.queue_type_of).
    """

    def __init__(
        self,
        url: str,
        *,
        on_connect: Callable[[], None] = lambda: None,
        on_disconnect: Callable[[Exception], None] = lambda e: None,
        queue_type: QueueType | None = None,
    ) -> None:
        self.url = url
        self.queue_type = queue_type_of(url) if queue_type is None else queue_type
        self._on_connect_hook = on_connect
        self._on_disconnect_hook = on_disconnect
        self._io = AmqpThread(
            url, name="dagyo-scheduler-amqp", on_connect=self._on_connect, on_disconnect=self._lost
        )
        self._work: BlockingChannel | None = None
        self._probe = ProbeChannel(self._side_channel)
        self._first = True
        self._recovering = False
        self._standing: dict[str, _Standing] = {}  # heartbeats, the shards' events, failures
        self._own_queues: dict[str, str] = {}  # a standing name -> its queue of this connection
        self._consumers = Consumers(self._channel)
        # Mailboxes declared on this connection.
        self._mailboxes: set[str] = set()
        self._lanes = QueueLanes(self._side_channel)
        self._jobs = JobsChannel(self._side_channel)

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and declare the shared topology.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
        """
        self._io.start()

    def close(self) -> None:
        """Close the connection and end the I/O thread (idempotent)."""
        self._io.close()

    @property
    def lost_node(self) -> str:
        """The broker node (``host:port``) of the connection lost last ("" before any)."""
        return self._io.lost_node

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return self._io.connected.is_set()

    @property
    def alive(self) -> bool:
        """False once the I/O thread ended on an error of its own (see ``failed``).

        A lost connection never ends it: it reconnects for as long as the scheduler runs.
        """
        return self._io.alive

    @property
    def failed(self) -> BaseException | None:
        """Why the I/O thread ended, when it did (a bug, not a lost connection)."""
        return self._io.failed

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the I/O thread and return its result (inline when on it).

        Raises:
            BrokerError: when the connection is down or was lost meanwhile, or the broker
                refused an operation.
        """
        if not self._io.in_io_thread and not self.connected:
            raise BrokerError(f"not connected to the broker at {redact_url(self.url)}")
        try:
            return self._io.call(function)
        except pika.exceptions.AMQPChannelError as e:
            self._io.submit(self._ensure_channel)
            raise BrokerError(f"the broker refused an operation: {e!r}") from e

    def submit(self, function: Callable[[], Any]) -> None:
        """Run ``function`` on the I/O thread soon (inline when on it); errors are logged."""
        self._io.submit(function)

    # --- connection ------------------------------------------------------------------------

    def _on_connect(self, connection: pika.BlockingConnection) -> None:
        self._consumers.clear()
        self._mailboxes.clear()
        self._lanes.reset()
        self._jobs.reset()
        work = connection.channel()
        # Confirms: a job or stop signal counts as sent only once the broker has it.
        work.confirm_delivery()
        work.basic_qos(prefetch_count=EXPORT_PREFETCH_FRAMES)
        work.add_on_cancel_callback(self._consumers.cancelled)
        self._work = work
        self._probe.reset(close=True)  # after a channel recovery the connection stays
        declare_topology(work, self.queue_type)
        self._delete_old_queues(connection)
        if self._first:
            self._first = False
            return
        self._on_connect_hook()
        for standing in list(self._standing.values()):
            self._consume_standing(standing)

    def _delete_old_queues(self, connection: pika.BlockingConnection) -> None:
        """Delete the single events and failures queues of older versions once empty (a
        channel of its own: the broker refuses a delete of a queue holding messages by
        closing the channel)."""
        for queue in (EVENTS_QUEUE, FAILURES_QUEUE):
            try:
                channel = connection.channel()
                channel.queue_delete(queue, if_empty=True)
                channel.close()
            except pika.exceptions.AMQPChannelError:
                log.warning("%s still holds messages of an older version: left in place", queue)

    def _lost(self, error: Exception) -> None:
        self._mailboxes.clear()
        self._lanes.reset()
        self._jobs.reset()
        self._work = None
        self._probe.reset()
        self._consumers.clear()
        self._on_disconnect_hook(error)

    def _channel(self) -> BlockingChannel:
        work = self._work
        if work is not None and work.is_open:
            return work
        if work is not None and not self._recovering:
            # The broker closed the work channel (a refused operation) and its consumers with
            # it: open a new one and restore every consumer, as after a reconnection, once
            # the operation under way has failed.
            self._recovering = True
            connection = work.connection
            connection.add_callback_threadsafe(lambda: self._recover(connection))
        raise BrokerError(f"not connected to the broker at {redact_url(self.url)}")

    def _side_channel(self) -> BlockingChannel:
        """A new channel on the work channel's connection (see scheduler.service.channels)."""
        return self._channel().connection.channel()

    def _ensure_channel(self) -> None:
        try:
            self._channel()
        except BrokerError:
            pass  # recovering, or reconnecting

    def _recover(self, connection: pika.BlockingConnection) -> None:
        self._recovering = False
        if not connection.is_open or (self._work is not None and self._work.is_open):
            return
        log.warning("the broker closed the scheduler's channel; opening a new one")
        try:
            self._on_connect(connection)
        except pika.exceptions.AMQPChannelError:
            log.exception("cannot restore the scheduler's channel")

    def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        on_cancel: Callable[[], None],
        message_type: type[Message] | None = None,
    ) -> None:
        """Consume a flow queue; ``on_cancel`` runs (on the I/O thread) if it is deleted.

        Args:
            message_type: decode each body as this first (a malformed one is dropped);
                None hands the handler the body (export frames: their reader judges them).
        """
        self.call(
            lambda: self._consumers.consume(
                queue, handler, on_cancel=on_cancel, message_type=message_type
            )
        )

    # --- publishing ------------------------------------------------------------------------

    def publish_jobs(self, jobs: Iterable[tuple[str, Message]], *, expires: float = 0.0) -> None:
        """Declare each mailbox and publish each (mailbox, job descriptor), all at once.

        The jobs go out on a channel without confirms, back to back, then one passive
        declare waits for the broker to have handled them: it would have returned (mandatory)
        any job no mailbox took before it answers. One round trip for all of a flow's jobs,
        where a confirm per job costs one each.

        Transient, not persistent: a job is useless without its flow's queues, which are
        not durable, so a job surviving a broker restart could only fail; and persisting
        costs a disk sync per job on the submit path.

        Args:
            expires: Unix time the broker drops jobs still waiting (their flow's deadline);
                0 for never.

        Raises:
            BrokerError: when a mailbox took no job, or the broker is gone.
        """
        pending = list(jobs)
        properties = JOB_PROPERTIES
        if expires:
            ttl_ms = max(1, int((expires - time.time()) * 1000))
            properties = pika.BasicProperties(
                content_type=JOB_PROPERTIES.content_type,
                type=JOB_PROPERTIES.type,
                app_id=JOB_PROPERTIES.app_id,
                expiration=str(ttl_ms),
            )
        for mailbox, _ in pending:
            self.declare_mailbox(mailbox)

        if pending:
            self.call(lambda: self._jobs.publish(pending, properties))

    def publish_stop(self, stop: Stop) -> None:
        """Broadcast a stop signal to every executor (none listening is no error)."""
        self.call(lambda: self._publish(STOP_EXCHANGE, "", stop))

    def publish_failure(self, report: FailureReport) -> None:
        """Publish a failure report the scheduler decided (lost, deadline, cancel, broker).

        It reaches the flow's watchers; the scheduler skips it on its own failure queue.
        """
        self.call(lambda: self._publish(FAILURES_EXCHANGE, failure_key(report.flow_id), report))

    def _publish(self, exchange: str, routing_key: str, message: Message) -> None:
        properties = pika.BasicProperties(
            content_type=PROTOBUF_CONTENT_TYPE,
            type=message.DESCRIPTOR.full_name,
            app_id=SCHEDULER_APP_ID,
        )
        try:
            self._channel().basic_publish(
                exchange, routing_key, message.SerializeToString(), properties, mandatory=True
            )
        except pika.exceptions.UnroutableError:
            pass  # no queue took it: no executor listens, or the flow has no watcher left
        except pika.exceptions.NackError as e:
            raise BrokerError(f"the broker refused a message for {routing_key}") from e
