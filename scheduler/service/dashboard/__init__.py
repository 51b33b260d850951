"""The web dashboard: flows, a live graph per flow, failures and the catalogue.

Served by the scheduler on ``DAGYO_UI`` (default ``127.0.0.1:8080``). It is an adapter over
the scheduler's flow service (flowservice.py), as the gRPC API is, so tokens, tenants and
quotas apply to it exactly as to the CLI: the browser sends its token (``Authorization:
Bearer …``), which names the caller of every use case.
Every asset ships in ``static/``; nothing is fetched from elsewhere and nothing is built.

Live updates are server-sent events (``/api/events``): the dashboard reads the scheduler at
:data:`POLL_S` and sends a record only when it changed. Each event stream holds one thread,
so they need a valid token before anything is streamed and are bounded per client, per
tenant and in all, and close when idle (live.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from executor.core.errors import (
    BrokerError,
    DagyoError,
    FlowNotFound,
    Unauthenticated,
    Unavailable,
    Unreachable,
)
from executor.core.httpserver import HttpServer, split_address
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.auth import Authenticator, Principal
from scheduler.service.config import DEFAULT_UI_ADDRESS
from scheduler.service.dashboard.live import LIVE_VIEW_WRITE_TIMEOUT_S, RETRY_AFTER_S, LiveViews
from scheduler.service.dashboard.views import catalogue_view, failure_view, flow_view, record_view
from scheduler.service.flowservice import REFUSALS

if TYPE_CHECKING:
    from scheduler.service.flowservice import FlowService

log = logging.getLogger("dagyo.scheduler.dashboard")

POLL_S = 0.5
# A browser's request body (a cancel) is tiny; anything larger is refused unread.
MAX_BODY_BYTES = 1024
LIST_LIMIT = 200
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Browsers ask for /favicon.ico whatever the page says: it gets the same icon.
FAVICON = "/favicon.ico"
PAGES = ("/", "/flows", "/failures", "/catalogue")


class Dashboard:
    """The dashboard's HTTP server, in a thread of its own.

    Args:
        address: ``host:port`` to listen on; port 0 picks a free one (see ``url``).
        service: the scheduler's use cases.
        authenticator: names the caller of each request from its token (the page says
            when the scheduler runs open, without tokens).
    """

    def __init__(self, *, address: str, service: FlowService, authenticator: Authenticator) -> None:
        host, port = split_address(address)
        self.service = service
        self.authenticator = authenticator
        self.open_mode = authenticator.open
        self.live = LiveViews()
        self._stopping = threading.Event()
        self._server = HttpServer(host or "127.0.0.1", port, _handler(self), name="dagyo-dashboard")

    @property
    def url(self) -> str:
        """Where a browser finds it."""
        host = self._server.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._server.port}/"

    def start(self) -> None:
        """Serve in the background."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving; open event streams end within :data:`POLL_S`."""
        self._stopping.set()
        self._server.stop()

    def caller(self, authorization: str) -> Principal:
        """Who sends a request with this ``Authorization`` header.

        Raises:
            Unauthenticated: tokens are on, and it carries none or an unknown one.
        """
        return self.authenticator.authenticate([("authorization", authorization)])

    def flows(self, principal: Principal) -> list[pb.FlowRecord]:
        """The newest :data:`LIST_LIMIT` flows the caller sees, newest first."""
        records: list[pb.FlowRecord] = []
        token = ""
        while True:
            want = min(LIST_LIMIT - len(records), 100)
            page = self.service.list(principal, limit=want, token=token)
            records += page.records
            token = page.next_token
            if not token or len(records) >= LIST_LIMIT:
                return records[:LIST_LIMIT]

    def failures(self, principal: Principal) -> Iterator[FailureReport]:
        """Every failure report the caller sees, oldest first."""
        token = ""
        while True:
            page = self.service.failures(principal, token=token)
            yield from page.reports
            token = page.next_token
            if not token:
                return


def open_dashboard(
    address: str, *, service: FlowService, authenticator: Authenticator
) -> Dashboard:
    """The dashboard listening on ``address`` (``DAGYO_UI``), not yet serving.

    Raises:
        DagyoError: it cannot listen there, naming the address and the variable; on the
            default address, a taken port (another scheduler here) gives any free one.
    """
    try:
        try:
            return Dashboard(address=address, service=service, authenticator=authenticator)
        except OSError:
            if address != DEFAULT_UI_ADDRESS:
                raise
            anywhere = f"{address.rpartition(':')[0]}:0"
            return Dashboard(address=anywhere, service=service, authenticator=authenticator)
    except OSError as e:
        raise DagyoError(
            f"cannot serve the dashboard on {address} ({e.strerror}): set DAGYO_UI to a "
            "free host:port, or to off"
        ) from e


def http_status(error: DagyoError) -> HTTPStatus:
    """The HTTP status answering a refusal of the flow service."""
    if isinstance(error, FlowNotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, Unauthenticated):
        return HTTPStatus.UNAUTHORIZED
    if isinstance(error, (BrokerError, Unavailable, Unreachable)):
        return HTTPStatus.SERVICE_UNAVAILABLE
    if isinstance(error, REFUSALS):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.BAD_GATEWAY  # a fault of the scheduler behind the page


def _handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "dagyo-dashboard"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _caller(self) -> Principal:
            return dashboard.caller(self.headers.get("Authorization", ""))

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self'; img-src 'self' data:",
            )
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _error(self, error: DagyoError) -> None:
            message = str(error)
            if isinstance(error, Unauthenticated):  # the page asks for a token on 401
                message = message.replace("set DAGYO_TOKEN", "give the dashboard a token")
            self._json(http_status(error), {"error": message})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            if path in PAGES or path.startswith("/flows/"):
                return self._static("index.html", "text/html; charset=utf-8")
            if path == FAVICON:
                return self._static("favicon.svg", STATIC["favicon.svg"])
            if path.startswith("/static/") and path[len("/static/") :] in STATIC:
                name = path[len("/static/") :]
                return self._static(name, STATIC[name])
            try:
                if path == "/api/info":
                    return self._json(200, {"open": dashboard.open_mode})
                if path == "/api/catalogue":
                    catalogue = dashboard.service.catalogue(self._caller())
                    return self._json(200, catalogue_view(catalogue))
                if path == "/api/flows":
                    return self._json(200, self._flows(query.get("state", [""])[0]))
                if path == "/api/failures":
                    failures = dashboard.failures(self._caller())
                    return self._json(200, [failure_view(f) for f in failures])
                if path.startswith("/api/flows/"):
                    return self._flow(path[len("/api/flows/") :])
                if path == "/api/events":
                    return self._events(query.get("flow", [""])[0])
            except DagyoError as e:
                return self._error(e)
            self._json(404, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = self.headers.get("Content-Length") or "0"
            if not (length.isascii() and length.isdigit()):
                self.close_connection = True  # where its body ends is unknown
                return self._json(400, {"error": f"Content-Length {length[:40]!r} is no length"})
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True
                return self._json(413, {"error": "request body too large"})
            if path.startswith("/api/flows/") and path.endswith("/cancel"):
                flow_id = path[len("/api/flows/") : -len("/cancel")]
                try:
                    record = dashboard.service.cancel(self._caller(), flow_id)
                except DagyoError as e:
                    return self._error(e)
                return self._json(200, record_view(record))
            self._json(404, {"error": f"no such action: {path}"})

        def _static(self, name: str, content_type: str) -> None:
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(200, body, content_type)

        def _flows(self, state: str) -> list[dict[str, Any]]:
            records = dashboard.flows(self._caller())
            views = [record_view(r, with_exports=False) for r in records]
            return [v for v in views if not state or v["state"] == state]

        def _flow(self, rest: str) -> None:
            flow_id, _, what = rest.partition("/")
            principal = self._caller()
            if what.startswith("exports/"):
                export, _, number = what[len("exports/") :].rpartition("/")
                return self._item(principal, flow_id, unquote(export), number)
            record = dashboard.service.get(principal, flow_id)
            if what == "exports.jsonl":
                lines = "".join(
                    json.dumps({"export": e.export, "value": json.loads(e.value_json)}) + "\n"
                    for e in record.exports
                )
                self.send_response(200)
                self.send_header("Content-Disposition", f'attachment; filename="{flow_id}.jsonl"')
                body = lines.encode()
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._json(200, flow_view(record, dashboard.service.catalogue(principal)))

        def _item(self, principal: Principal, flow_id: str, export: str, number: str) -> None:
            """One exported item's serialized bytes (``NAME-N.binpb``, as `dagyo flow
            export` writes it), an offloaded one read from the store as it is sent."""
            if not (number.isascii() and number.isdigit()):
                return self._json(404, {"error": f"no item {number[:40]!r} of an export"})
            item = dashboard.service.exports.item(principal, flow_id, export, int(number))
            pieces = item.read()
            first = next(pieces, b"")  # a gone object is refused before anything is sent
            name = quote(f"{export}-{int(number)}.binpb", safe="")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(item.size))
            self.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{name}")
            self.send_header("X-Dagyo-Sha256", item.sha256)  # hex, as `flow export` prints it
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            try:
                self.wfile.write(first)
                for piece in pieces:
                    self.wfile.write(piece)
            except (OSError, DagyoError) as e:  # a browser gone, or the store failing midway
                log.info(
                    "flow %s: export %s item %s not sent whole: %s", flow_id, export, number, e
                )
                self.close_connection = True  # the client sees fewer bytes than announced

        def _events(self, flow_id: str) -> None:
            tenant = self._caller().tenant  # without a valid token: 401, nothing streamed
            client = self.client_address[0]
            refused = dashboard.live.take(client, tenant)
            if refused is not None:
                body = json.dumps({"error": refused.reason}).encode()
                self.send_response(refused.status)
                self.send_header("Retry-After", str(RETRY_AFTER_S))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            try:
                # A client that reads nothing for this long loses its view (and its thread).
                self.connection.settimeout(LIVE_VIEW_WRITE_TIMEOUT_S)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self._stream(flow_id)
            except OSError:  # the browser went away, or stopped reading
                self.close_connection = True
            finally:
                dashboard.live.give_back(client, tenant)

        def _stream(self, flow_id: str) -> None:
            last, changed = "", time.monotonic()
            service = dashboard.service
            while not dashboard._stopping.is_set():
                if time.monotonic() - changed > dashboard.live.idle_s:
                    return  # a page still shown opens another view
                try:
                    principal = self._caller()  # a token revoked meanwhile ends the view
                    if flow_id:
                        record = service.get(principal, flow_id)
                        data: Any = flow_view(record, service.catalogue(principal))
                    else:
                        data = {
                            "flows": [
                                record_view(r, with_exports=False)
                                for r in dashboard.flows(principal)
                            ],
                            "failures": [failure_view(f) for f in dashboard.failures(principal)],
                        }
                except Unauthenticated:
                    return  # the page asks for a token when it opens the view again
                except DagyoError as e:
                    data = {"error": str(e)}
                text = json.dumps(data)
                if text != last:
                    self.wfile.write(f"data: {text}\n\n".encode())
                    self.wfile.flush()
                    last, changed = text, time.monotonic()
                else:  # a comment keeps proxies from closing an idle stream
                    self.wfile.write(b": idle\n\n")
                    self.wfile.flush()
                time.sleep(POLL_S)

    return Handler
