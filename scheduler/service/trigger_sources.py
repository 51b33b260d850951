"""Where trigger events come from: HTTP POSTs and AMQP queues, both CloudEvents bindings.

:class:`HttpSource` serves ``POST /`` on ``DAGYO_TRIGGERS_HTTP``: a CloudEvent in binary
(``ce-*`` headers) or structured (``application/cloudevents+json``) content mode. It
answers once the event's flows are submitted (a batch may wait ``max_wait_s``):

* 202 ``{"flow_ids": [...]}``; the same event again: 200 with the same ids and
  ``"duplicate": true``;
* 400 ``{"error": ...}`` for a body that is not a CloudEvent, or one that matches no
  trigger or does not bind; 401 without a valid token (tokens on);
* 503 (with ``Retry-After``) when too many events wait or the flow could not start yet
  (a quota, no executor, the broker away): the source sends it again.

:class:`AmqpSource` consumes, for each trigger naming ``"amqp"``, the queue
``dagyo.triggers.<name>`` bound to its exchange and routing key (the exchange is declared
as a durable topic exchange when missing). A message is acked once its flow is submitted
(or it was refused: it would be refused again), and put back to be retried when the flow
could not start yet.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import pika.exceptions
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq

from executor.amqp import AmqpThread
from executor.constants import TRIGGER_QUEUE_PREFIX
from executor.errors import (
    Busy,
    DagyoError,
    EventNotParsed,
    EventRefused,
    FiringFailed,
    Unauthenticated,
)
from executor.progdef import Catalogue
from scheduler.service.auth import OPEN, Authenticator, Principal
from scheduler.service.trigger_firing import Firing
from scheduler.service.triggers import MAX_BATCH_WAIT_S, Trigger

log = logging.getLogger("dagyo.scheduler.triggers")

# The largest event body taken; CloudEvents carry references to data, not the data.
MAX_EVENT_BYTES = 1024 * 1024
# How long an HTTP answer waits for its flows: the longest batch, and a submit.
ANSWER_WAIT_S = MAX_BATCH_WAIT_S + 30.0
RETRY_AFTER_S = 1
# Unacked events per AMQP trigger queue: the rest wait in the broker, not in the scheduler.
AMQP_PREFETCH = 64
# A message whose flow could not start yet goes back to its queue after this wait.
AMQP_RETRY_S = 1.0
# Connections the kernel holds for accept(): a burst of senders is queued, not reset
# (the standard library's 5 resets a sender in a burst of a few dozen).
HTTP_BACKLOG = 1024


class _Server(ThreadingHTTPServer):
    request_queue_size = HTTP_BACKLOG
    daemon_threads = True


def parse_event(read: Any, message: Any) -> Any:
    """A CloudEvent from a binding's message, its SDK errors made one :class:`EventNotParsed`."""
    try:
        return read(message)
    except Exception as e:  # the SDK raises its own, json's, and AttributeError on a list
        raise EventNotParsed(
            f"not a CloudEvent ({type(e).__name__}: {str(e)[:300]}): send the binary mode "
            "(ce-id, ce-source, ce-type, ce-specversion headers) or the structured mode "
            "(content-type application/cloudevents+json)"
        ) from None


def wait_flow_ids(futures: list[Future[list[str]]], timeout_s: float) -> list[str]:
    """The flow ids of every future, in order.

    Raises:
        FiringFailed: a flow was refused (or none came within ``timeout_s``).
    """
    flow_ids: list[str] = []
    for future in futures:
        try:
            flow_ids += future.result(timeout_s)
        except FutureTimeout:
            raise FiringFailed("the flow did not start in time", retryable=True) from None
    return flow_ids


class HttpSource:
    """The HTTP endpoint of the triggers: CloudEvents POSTed to ``/``.

    Args:
        address: ``host:port`` to listen on (port 0: any free one, see ``address``).
        firing: where accepted events go.
        authenticator: with tokens on, a POST needs ``Authorization: Bearer <token>``.
    """

    def __init__(self, address: str, *, firing: Firing, authenticator: Authenticator) -> None:
        host, _, port = address.rpartition(":")
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                source._post(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("trigger http: " + format, *args)

        try:
            self._server = _Server((host, int(port)), Handler)
        except OSError as e:
            raise DagyoError(
                f"cannot take CloudEvents on {address} ({e.strerror}): set DAGYO_TRIGGERS_HTTP "
                "to a free host:port"
            ) from e
        self.address = f"{host}:{self._server.server_address[1]}"
        self._firing = firing
        self._authenticator = authenticator
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dagyo-trigger-http", daemon=True
        )

    def start(self) -> None:
        """Serve in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.split("?")[0] != "/":
            self._answer(request, 404, {"error": "POST CloudEvents to /"})
            return
        try:
            principal = self._authenticator.authenticate(
                [("authorization", request.headers.get("Authorization", ""))]
            )
        except Unauthenticated as e:
            self._answer(request, 401, {"error": str(e).replace("DAGYO_TOKEN", "a token")})
            return
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_EVENT_BYTES:
            self._answer(request, 413, {"error": f"an event is at most {MAX_EVENT_BYTES} bytes"})
            return
        body = request.rfile.read(length)
        headers = {key.lower(): value for key, value in request.headers.items()}
        self._answer(request, *self.handle(headers, body, principal))

    def handle(
        self, headers: dict[str, str], body: bytes, principal: Principal
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for one POSTed event."""
        try:
            event = parse_event(ce_http.from_http_event, ce_http.HTTPMessage(headers, body))
            futures = self._firing.accept(event, principal=principal)
            duplicate = all(future.done() for future in futures)
            flow_ids = wait_flow_ids(futures, ANSWER_WAIT_S)
        except (EventNotParsed, EventRefused) as e:
            return 400, {"error": str(e)}
        except Busy as e:
            return 503, {"error": str(e)}
        except FiringFailed as e:
            return (503 if e.retryable else 400), {"error": str(e)}
        if duplicate:
            return 200, {"flow_ids": flow_ids, "duplicate": True}
        return 202, {"flow_ids": flow_ids}

    def _answer(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        # ASCII: an error may echo an event's text, and a lone surrogate has no UTF-8.
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        if status == 503:
            request.send_header("Retry-After", str(RETRY_AFTER_S))
        request.end_headers()
        request.wfile.write(data)


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
            queue = f"{TRIGGER_QUEUE_PREFIX}.{trigger.name}"
            # Durable: events published while the scheduler is away wait for it.
            channel.queue_declare(queue, durable=True)
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
            futures = self._firing.accept(event, principal=self._principal, trigger=trigger.name)
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

        for future in futures:  # one: the queue is this trigger's alone
            future.add_done_callback(settle)

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
            the broker, the catalogue and the state file (where firings are kept).
        submit: the servicer's ``Submit``.
        authenticator: decides tenants (tokens on) and who may POST events.
        catalogue: the scheduler's catalogue loader.

    Raises:
        DagyoError: the folder cannot be read, or the HTTP address is taken.
    """

    def __init__(
        self,
        settings: Any,
        *,
        submit: Any,
        authenticator: Authenticator,
        catalogue: Callable[[], Catalogue],
    ) -> None:
        from scheduler.service.trigger_firing import FiringStore
        from scheduler.service.triggers import load_triggers

        triggers, invalid = load_triggers(
            settings.triggers_dir, tenant_required=not authenticator.open
        )
        for refused in invalid:
            for problem in refused.problems:
                log.error("trigger file refused: %s", problem)
        self._store = FiringStore(settings.state_path)
        self.firing = Firing(
            triggers=triggers,
            invalid=invalid,
            submit=submit,
            catalogue=catalogue,
            authenticator=authenticator,
            store=self._store,
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
        self._store.close()

    def report(self, principal: Principal) -> list[Any]:
        """The triggers the caller may see, with their last firings (``dagyo.v1.Trigger``)."""
        return self.firing.report(principal)
