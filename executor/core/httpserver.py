"""The one HTTP server of dagyo's programs: health and metrics (executor and scheduler), the
dashboard and the triggers' CloudEvents endpoint all serve through :class:`HttpServer`.

One set of rules for all of them: an IPv6 address (``::1``, or ``[::1]`` as in a URL) is
listened on as IPv6, anything else as IPv4 or a name; the kernel holds
:data:`HTTP_BACKLOG` connections for ``accept()``; each connection runs on a daemon thread,
at most :data:`MAX_CONNECTIONS` at once (one past it is closed at once), and a client that
sends nothing for :data:`READ_TIMEOUT_S` is cut off: a slow or idle client cannot hold
threads for ever.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Connections the kernel holds for accept(): a burst of clients is queued, not reset (the
# standard library's 5 resets a sender in a burst of a few dozen).
HTTP_BACKLOG = 1024
# A connection whose client sends nothing for this long is closed (a request trickled out
# byte by byte, or a kept-alive connection left idle); a live view's stream only writes.
READ_TIMEOUT_S = 30.0
# Connections served at once; one past it is closed without an answer (each holds a thread).
MAX_CONNECTIONS = 512
# How long stop() waits for the serving thread to end.
STOP_WAIT_S = 5.0


class _Server(ThreadingHTTPServer):
    request_queue_size = HTTP_BACKLOG
    daemon_threads = True
    read_timeout_s = READ_TIMEOUT_S
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)  # replaced per server

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        connection.settimeout(self.read_timeout_s)
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) as (host, port); an empty host is ``""``.

    Raises:
        ValueError: when the port is not a number.
    """
    host, _, port = address.rpartition(":")
    return host, int(port)


class HttpServer:
    """An HTTP server on a thread of its own, listening once constructed.

    Args:
        host: the interface: an IPv4 or IPv6 address (brackets allowed) or a name; ``""``
            or ``0.0.0.0`` is every IPv4 one.
        port: the TCP port; 0 picks a free one (see ``port``).
        handler: answers each request, on a thread of its own.
        name: the serving thread's name.
        read_timeout_s: how long a connection may send nothing before it is closed.
        max_connections: how many are served at once.

    Raises:
        OSError: when it cannot listen there (the caller names the setting to change).
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: type[BaseHTTPRequestHandler],
        *,
        name: str,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        host = host.removeprefix("[").removesuffix("]")
        server = _Server6 if ":" in host else _Server
        self._server = server((host, port), handler)
        self._server.read_timeout_s = read_timeout_s
        self._server.slots = threading.BoundedSemaphore(max_connections)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        """Serve in the background; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(STOP_WAIT_S)
        self._server.server_close()
