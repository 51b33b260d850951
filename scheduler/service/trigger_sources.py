"""Where trigger events come from: HTTP POSTs (``trigger_http.py``) and AMQP queues, both
CloudEvents bindings, and the service that runs the triggers of one scheduler.

:class:`AmqpSource` consumes, for each trigger naming ``"amqp"``, the queue
``dagyo.triggers.<name>`` bound to its exchange and routing key (the exchange is declared
as a durable topic exchange when missing). A message is acked once its flow is submitted
(or it was refused: it would be refused again), and put back to be retried when the flow
could not start yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq

from executor.core.amqp import AmqpThread
from executor.core.constants import trigger_queue
from executor.core.errors import (
    Busy,
    DagyoError,
    EventNotParsed,
    EventRefused,
    FiringFailed,
)
from executor.core.progdef import Catalogue
from executor.core.settings import queue_type_of
from executor.core.topology import MOVE_SHARED_QUEUE, declare_durable
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import OPEN, Authenticator, Principal
from scheduler.service.store import TriggerFirings
from scheduler.service.trigger_firing import Firing, Submit
from scheduler.service.trigger_http import HttpSource, parse_event
from scheduler.service.triggers import Trigger

if TYPE_CHECKING:
    from scheduler.service.config import SchedulerSettings

log = logging.getLogger("dagyo.scheduler.triggers")

# Unacked events per AMQP trigger queue: the rest wait in the broker, not in the scheduler.
AMQP_PREFETCH = 64
# A message whose flow could not start yet goes back to its queue after this wait.
AMQP_RETRY_S = 1.0


class AmqpSource:
    """Consumes the AMQP queues of the triggers that name an exchange, on one I/O thread.

    Args:
        queue_url: the broker.
        triggers: the triggers with ``amqp``.
        firing: where accepted events go.
        principal: whom the events come as (an AMQP message carries no token: the broker's
            own permissions decide who may publish to the exchange).
    """

    def __init__(
        self, queue_url: str, *, triggers: list[Trigger], firing: Firing, principal: Principal
    ) -> None:
        self.triggers = triggers
        self._firing = firing
        self._principal = principal
        self._queue_type = queue_type_of(queue_url)
        self._io = AmqpThread(queue_url, name="dagyo-trigger-amqp", on_connect=self._declare)

    def start(self) -> None:
        """Connect, declare each trigger's queue and consume it.

        Raises:
            BrokerUnavailable: when the broker cannot be reached.
        """
        self._io.start()

    def stop(self) -> None:
        """Stop consuming; unacked events go back to their queues."""
        self._io.close()

    def _declare(self, connection: pika.BlockingConnection) -> None:
        for trigger in self.triggers:
            assert trigger.amqp is not None
            exchange, routing_key = trigger.amqp
            channel = connection.channel()
            try:
                channel.exchange_declare(exchange, passive=True)
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code != 404:
                    raise
                channel = connection.channel()
                channel.exchange_declare(exchange, "topic", durable=True)
            queue = trigger_queue(trigger.name)
            # Durable: events published while the scheduler is away wait for it.
            declare_durable(channel, queue, self._queue_type, how_to_move=MOVE_SHARED_QUEUE)
            channel.queue_bind(queue, exchange, routing_key)
            channel.basic_qos(prefetch_count=AMQP_PREFETCH)
            channel.basic_consume(
                queue,
                lambda ch, method, properties, body, t=trigger: self._on_message(
                    ch, method, properties, body, t
                ),
                auto_ack=False,
            )
            log.info("trigger %s takes CloudEvents from queue %s", trigger.name, queue)

    def _on_message(
        self,
        channel: Any,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
        trigger: Trigger,
    ) -> None:
        headers = {str(k): _header_text(v) for k, v in (properties.headers or {}).items()}
        message = ce_rabbitmq.RabbitMQMessage(headers, properties.content_type, body)
        try:
            event = parse_event(ce_rabbitmq.from_rabbitmq_event, message)
            accepted = self._firing.accept(event, principal=self._principal, trigger=trigger.name)
        except (EventNotParsed, EventRefused) as e:
            log.warning("trigger %s: dropped a message: %s", trigger.name, e)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        except Busy:
            self._retry_later(channel, method.delivery_tag)
            return
        tag: int = method.delivery_tag

        def settle(done: Future[list[str]]) -> None:
            self._io.submit(lambda: self._settle(channel, tag, done, trigger))

        for one in accepted:  # one: the queue is this trigger's alone
            one.future.add_done_callback(settle)

    def _settle(self, channel: Any, tag: int, future: Future[list[str]], trigger: Trigger) -> None:
        if not channel.is_open:  # the message went back to its queue with the channel
            return
        error = future.exception()
        if isinstance(error, FiringFailed) and error.retryable:
            self._retry_later(channel, tag)
            return
        if error is not None:
            log.warning("trigger %s: dropped a message: %s", trigger.name, error)
        channel.basic_ack(tag)

    def _retry_later(self, channel: Any, tag: int) -> None:
        def requeue() -> None:
            if channel.is_open:
                channel.basic_nack(tag, requeue=True)

        self._io.connection().call_later(AMQP_RETRY_S, requeue)


def _header_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class TriggerService:
    """The triggers of one scheduler: the files read at start, their firing, their sources.

    Args:
        settings: ``triggers_dir`` (must be set), ``triggers_http``, ``triggers_waiting``,
            the broker and the catalogue.
        firings: where firings are kept (the scheduler's store).
        submit: starts a flow as a principal's (the flow service's ``submit``).
        authenticator: decides tenants (tokens on) and who may POST events.
        catalogue: the scheduler's catalogue loader.

    Raises:
        DagyoError: the folder cannot be read, or the HTTP address is taken.
    """

    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        firings: TriggerFirings,
        submit: Submit,
        authenticator: Authenticator,
        catalogue: Callable[[], Catalogue],
    ) -> None:
        from scheduler.service.triggers import load_triggers

        if settings.triggers_dir is None:
            raise DagyoError("the scheduler's triggers need DAGYO_TRIGGERS, a folder")
        triggers, invalid = load_triggers(
            settings.triggers_dir, tenant_required=not authenticator.open
        )
        for refused in invalid:
            for problem in refused.problems:
                log.error("trigger file refused: %s", problem)
        self._firings = firings
        self.firing = Firing(
            triggers=triggers,
            invalid=invalid,
            submit=submit,
            catalogue=catalogue,
            authenticator=authenticator,
            store=firings,
            max_waiting=settings.triggers_waiting,
        )
        self.http: HttpSource | None = None
        self.amqp: AmqpSource | None = None
        by_http = [t.name for t in triggers if t.amqp is None]
        if settings.triggers_http:
            self.http = HttpSource(
                settings.triggers_http, firing=self.firing, authenticator=authenticator
            )
        elif by_http:
            log.warning(
                "triggers %s take CloudEvents by HTTP, but DAGYO_TRIGGERS_HTTP is not set: "
                "set it to the host:port to take them on",
                ", ".join(by_http),
            )
        by_amqp = [t for t in triggers if t.amqp is not None]
        if by_amqp:
            self.amqp = AmqpSource(
                settings.queue_url, triggers=by_amqp, firing=self.firing, principal=OPEN
            )

    def start(self) -> None:
        """Start firing, then take events.

        Raises:
            BrokerUnavailable: when an AMQP trigger's broker cannot be reached.
        """
        self.firing.start()
        if self.http is not None:
            self.http.start()
            log.info("triggers take CloudEvents by HTTP on %s", self.http.address)
        if self.amqp is not None:
            self.amqp.start()

    def stop(self) -> None:
        """Take no more events, start the flows of the batches gathered, and stop."""
        if self.http is not None:
            self.http.stop()
        if self.amqp is not None:
            self.amqp.stop()
        self.firing.stop()

    def report(self, principal: Principal) -> list[pb.Trigger]:
        """Every trigger the caller may see, valid or not, with its last firings."""
        rows = []
        for trigger in self.firing.triggers:
            if not principal.sees(trigger.tenant):
                continue
            fired, firings = self._firings.last(trigger.name)
            rows.append(
                pb.Trigger(
                    name=trigger.name,
                    file=str(trigger.file),
                    flow=str(trigger.flow_path),
                    events=trigger.events,
                    match=" ".join(f"{k}={v}" for k, v in trigger.match.items()),
                    tenant=trigger.tenant,
                    firings=firings,
                    fired=fired,
                )
            )
        if principal.admin:  # an invalid file's tenant is unknown: operators see them
            rows += [
                pb.Trigger(name=t.name, file=str(t.file), problems=t.problems)
                for t in self.firing.invalid
            ]
        return sorted(rows, key=lambda row: row.name)
