"""CloudEvents over HTTP: :class:`HttpSource` serves ``POST /`` on ``DAGYO_TRIGGERS_HTTP``,
a CloudEvent in binary (``ce-*`` headers) or structured (``application/cloudevents+json``)
content mode. It answers once the event is accepted: for a trigger that does not batch, once
its flow is submitted; for one that batches, at once, with where to look for its flow:

* 202 ``{"flow_ids": [...]}``; when it waits in a batch, also ``"waiting": [TRIGGER…]``
  and ``"status": "/events?source=S&id=I"``, which ``GET`` answers with ``flow_ids`` and
  ``waiting`` (404 for an event no trigger took); the same event again: 200 with the same
  ids and ``"duplicate": true``;
* 400 ``{"error": ...}`` for a body that is not a CloudEvent, or one that matches no
  trigger or does not bind; 401 without a valid token (tokens on);
* 503 (with ``Retry-After``) when too many events wait or the flow could not start yet
  (a quota, no executor, the broker away): the source sends it again.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler
from typing import Any

from cloudevents.core.bindings import http as ce_http

from executor.core.errors import (
    Busy,
    DagyoError,
    EventNotParsed,
    EventRefused,
    FiringFailed,
    Unauthenticated,
)
from executor.core.httpserver import HttpServer, split_address
from scheduler.service.auth import Authenticator, Principal
from scheduler.service.trigger_firing import Accepted, Firing
from scheduler.service.triggers import MAX_BATCH_WAIT_S

log = logging.getLogger("dagyo.scheduler.triggers")

# The largest event body taken; CloudEvents carry references to data, not the data.
MAX_EVENT_BYTES = 1024 * 1024
# How long an HTTP answer waits for its flows: a submit (a batch answers at once).
ANSWER_WAIT_S = MAX_BATCH_WAIT_S + 30.0
RETRY_AFTER_S = 1
# Where a sender asks what became of an event that waits in a batch.
STATUS_PATH = "/events"


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


def _started(accepted: Accepted) -> bool:
    """Whether an event's flow of that trigger started already."""
    return accepted.future.done() and accepted.future.exception() is None


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
        host, port = split_address(address)
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                source._post(self)

            def do_GET(self) -> None:  # noqa: N802
                source._get(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("trigger http: " + format, *args)

        try:
            self._server = HttpServer(host, port, Handler, name="dagyo-trigger-http")
        except OSError as e:
            raise DagyoError(
                f"cannot take CloudEvents on {address} ({e.strerror}): set DAGYO_TRIGGERS_HTTP "
                "to a free host:port"
            ) from e
        self.address = f"{host}:{self._server.port}"
        self._firing = firing
        self._authenticator = authenticator

    def start(self) -> None:
        """Serve in a thread."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def _caller(self, request: BaseHTTPRequestHandler) -> Principal | None:
        """Who sent the request; None once it was answered 401."""
        try:
            return self._authenticator.authenticate(
                [("authorization", request.headers.get("Authorization", ""))]
            )
        except Unauthenticated as e:
            self._answer(request, 401, {"error": str(e).replace("DAGYO_TOKEN", "a token")})
            return None

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        path, _, query = request.path.partition("?")
        if path != STATUS_PATH:
            self._answer(request, 404, {"error": f"POST CloudEvents to /; GET {STATUS_PATH}"})
            return
        principal = self._caller(request)
        if principal is None:
            return
        asked = urllib.parse.parse_qs(query)
        source, event_id = asked.get("source", [""])[0], asked.get("id", [""])[0]
        if not event_id:
            self._answer(request, 400, {"error": f"GET {STATUS_PATH}?source=SOURCE&id=ID"})
            return
        status = self._firing.status(source, event_id, principal)
        if status["flow_ids"] or status["waiting"]:
            self._answer(request, 200, status)
            return
        self._answer(
            request,
            404,
            {"error": f"no trigger took event {event_id!r} from source {source!r}"},
        )

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.split("?")[0] != "/":
            self._answer(request, 404, {"error": "POST CloudEvents to /"})
            return
        principal = self._caller(request)
        if principal is None:
            return
        length = request.headers.get("Content-Length") or "0"
        if not (length.isascii() and length.isdigit()):
            request.close_connection = True  # where its body ends is unknown
            self._answer(request, 400, {"error": f"Content-Length {length[:40]!r} is no length"})
            return
        if int(length) > MAX_EVENT_BYTES:
            request.close_connection = True
            self._answer(request, 413, {"error": f"an event is at most {MAX_EVENT_BYTES} bytes"})
            return
        body = request.rfile.read(int(length))
        headers = {key.lower(): value for key, value in request.headers.items()}
        self._answer(request, *self.handle(headers, body, principal))

    def handle(
        self, headers: dict[str, str], body: bytes, principal: Principal
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for one POSTed event."""
        try:
            event = parse_event(ce_http.from_http_event, ce_http.HTTPMessage(headers, body))
            accepted = self._firing.accept(event, principal=principal)
            duplicate = all(a.future.done() for a in accepted)
            # A batching trigger's flow waits for more events: the sender does not.
            waiting = [a.trigger.name for a in accepted if a.trigger.batches and not _started(a)]
            now = [a.future for a in accepted if a.trigger.name not in waiting]
            flow_ids = wait_flow_ids(now, ANSWER_WAIT_S)
        except (EventNotParsed, EventRefused) as e:
            return 400, {"error": str(e)}
        except Busy as e:
            return 503, {"error": str(e)}
        except FiringFailed as e:
            return (503 if e.retryable else 400), {"error": str(e)}
        answer: dict[str, Any] = {"flow_ids": flow_ids}
        if waiting:
            query = urllib.parse.urlencode({"source": event.get_source(), "id": event.get_id()})
            answer.update(waiting=waiting, status=f"{STATUS_PATH}?{query}")
        if duplicate:
            return 200, {**answer, "duplicate": True}
        return 202, answer

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
