"""The HTTP side of `slimdiff serve`: what a request must look like before it reaches the generator.

Any web page the user's browser opens can send requests to 127.0.0.1, so the server trusts nothing it is sent:
- the Host header must name this server (a loopback name, the bound address or an IP literal), which defeats
  DNS rebinding; a browser's Origin, when sent, must name this server too;
- a POST must say `Content-Type: application/json` — a cross-site page can only send that after a CORS
  preflight, which this server never grants — and its body is at most `MAX_BODY` bytes;
- every connection has a socket timeout, and at most `MAX_CONNECTIONS` are served at once (the rest get 503),
  so a peer that never finishes its request cannot hold the server.
Bad requests are answered with a 4xx status and one line; bugs with 500 and a line, the traceback in the log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from slimdiff.errors import ModelError, SlimdiffError
from slimdiff.serve.page import PAGE
from slimdiff.serve.server import Generator

log = logging.getLogger("slimdiff.serve")
MAX_BODY = 64 * 1024  # a generate request is a few numbers and a prompt
MAX_CONNECTIONS = 8
SOCKET_TIMEOUT = 20.0  # seconds a peer may take to send its request
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Refused(Exception):
    """A request answered with `status` and one line, before any work."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(authority: str, server_host: str, port: int) -> bool:
    """Whether a Host header (or an Origin's host:port) names this server: a loopback name, the address it is
    bound to, or — when bound to every interface — any IP literal (rebinding needs a DNS name)."""
    parts = urlsplit(f"//{authority}")
    try:
        asked_port = parts.port
    except ValueError:
        return False
    name = (parts.hostname or "").lower()
    if asked_port != port and not (asked_port is None and port == 80):  # no port in the header means 80
        return False
    if name in LOOPBACK_NAMES or name == server_host.lower():
        return True
    return server_host in ("0.0.0.0", "::") and _is_ip_literal(name)


def read_json_body(headers, rfile) -> object:
    """The JSON body of a POST, checked before a byte of it is parsed: type, declared length, size."""
    kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, "send the request as JSON (Content-Type: application/json)")
    declared = headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        raise Refused(400, "Content-Length must be a byte count")
    length = int(declared)
    if length > MAX_BODY:
        raise Refused(413, f"the request is {length} bytes; at most {MAX_BODY} are accepted")
    body = rfile.read(length)
    if len(body) < length:
        raise Refused(400, "the request body ended before Content-Length bytes")
    try:
        return json.loads(body or b"{}")
    except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, deep nesting
        raise Refused(400, "the request is not valid JSON") from None


def handler_for(generator: Generator):
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _check_peer(self) -> None:
            host, port = self.server.server_address[:2]
            if not host_allowed(self.headers.get("Host") or "", host, port):
                raise Refused(403, "unknown Host: open the page at the address slimdiff serve printed")
            origin = self.headers.get("Origin")
            if origin is not None and not host_allowed(urlsplit(origin).netloc, host, port):
                raise Refused(403, f"requests from {origin} are not accepted")

        def _answer(self, work) -> None:
            try:
                self._check_peer()
                work()
            except Refused as refused:
                self._json(refused.status, {"error": str(refused)})
            except SlimdiffError as error:
                self._json(400, {"error": str(error).splitlines()[0]})
            except TimeoutError:
                self.close_connection = True
            except Exception as error:  # a bug: logged with its traceback, one line on the page
                log.exception("request failed")
                self._json(500, {"error": f"internal error ({type(error).__name__}); see the server's log"})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            def work() -> None:
                if self.path in ("/", "/index.html"):
                    self._send(200, PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/api/info":
                    self._json(200, generator.info())
                else:
                    raise Refused(404, f"no page {self.path}")

            self._answer(work)

        def do_POST(self) -> None:  # noqa: N802
            def work() -> None:
                if self.path != "/api/generate":
                    raise Refused(404, f"no endpoint {self.path}")
                params = read_json_body(self.headers, self.rfile)
                if not isinstance(params, dict):
                    raise Refused(400, "the request must be a JSON object")
                self._json(200, generator.run(params))

            self._answer(work)

        def log_message(self, format: str, *args) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """A threading server that serves at most `MAX_CONNECTIONS` connections at once and answers the rest 503."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(BUSY)
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(generator: Generator, host: str = "127.0.0.1", port: int = 7860) -> BoundedServer:
    """An HTTP server for `generator` on (host, port); port 0 picks a free one (`server.server_address`)."""
    try:
        return BoundedServer((host, port), handler_for(generator))
    except OSError as error:
        raise ModelError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port"
        ) from None
