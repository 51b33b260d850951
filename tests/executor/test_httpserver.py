"""The one HTTP server every endpoint serves through: IPv4 and IPv6 alike, a burst of
clients queued rather than reset, and a stop that frees the port."""

from __future__ import annotations

import http.client
import socket
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest

from executor.core.httpserver import HttpServer, split_address
from tests.waiting import eventually


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def get(host: str, port: int) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/")
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0", "::1:0", "localhost:0"])
def test_it_listens_on_ipv4_ipv6_and_names(address: str) -> None:
    server = HttpServer(*split_address(address), Hello, name="test-http").start()
    try:
        assert server.port > 0
        host = "localhost" if address.startswith("localhost") else server.host
        assert get(host, server.port) == (200, b"hello\n")
    finally:
        server.stop()


def test_a_burst_of_clients_is_answered_not_reset() -> None:
    server = HttpServer("127.0.0.1", 0, Hello, name="test-http").start()
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(lambda _: get("127.0.0.1", server.port), range(256)))
        assert answers == [(200, b"hello\n")] * 256
    finally:
        server.stop()


def test_stop_frees_the_port_and_may_be_called_twice() -> None:
    server = HttpServer("127.0.0.1", 0, Hello, name="test-http").start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_client_that_sends_half_a_request_is_cut_off_after_the_read_timeout() -> None:
    # A slow client (a request trickled out, or never finished) holds a thread only until
    # the read timeout, then its connection is closed; other clients are answered meanwhile.
    server = HttpServer("127.0.0.1", 0, Hello, name="test-http", read_timeout_s=0.5).start()
    try:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert get("127.0.0.1", server.port) == (200, b"hello\n")
        # The server closes it: recv returns end-of-file, not a hang until our own timeout.
        assert slow.recv(1024) == b""
        slow.close()
    finally:
        server.stop()


def test_connections_past_the_cap_are_closed_at_once_and_the_cap_frees_up() -> None:
    server = HttpServer(
        "127.0.0.1", 0, Hello, name="test-http", read_timeout_s=30, max_connections=4
    ).start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\n")  # unfinished: each holds its slot
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        assert extra.recv(1024) == b""  # closed by the server, not queued for ever
        extra.close()
        for s in held:
            s.close()
        # Slots come back as the held connections end.
        eventually(
            lambda: get("127.0.0.1", server.port) == (200, b"hello\n"),
            30,
            ignoring=(ConnectionError, http.client.HTTPException),
            what="a slot to free up",
        )
    finally:
        server.stop()
