"""The one HTTP server of dagyo's programs: health and metrics (executor and scheduler), the
dashboard and the triggers' CloudEvents endpoint all serve through :class:`HttpServer`.

One set of rules for all of them: an IPv6 address (``::1``, or ``[::1]`` as in a URL) is
listened on as IPv6, anything else as IPv4 or a name; the kernel holds
:data:`HTTP_BACKLOG` connections for ``accept()``; each request runs on a daemon thread.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Connections the kernel holds for accept(): a burst of clients is queued, not reset (the
# standard library's 5 resets a sender in a burst of a few dozen).
HTTP_BACKLOG = 1024
# How long stop() waits for the serving thread to end.
STOP_WAIT_S = 5.0


class _Server(ThreadingHTTPServer):
    request_queue_size = HTTP_BACKLOG
    daemon_threads = True


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

    Raises:
        OSError: when it cannot listen there (the caller names the setting to change).
    """

    def __init__(
        self, host: str, port: int, handler: type[BaseHTTPRequestHandler], *, name: str
    ) -> None:
        host = host.removeprefix("[").removesuffix("]")
        server = _Server6 if ":" in host else _Server
        self._server = server((host, port), handler)
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
