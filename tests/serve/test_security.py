"""`slimdiff serve` against a hostile peer: any page the user's browser opens can reach 127.0.0.1 (issue 27).
Requests with exactly the headers a foreign page or a stalled client could send, on a live uvicorn server."""

from __future__ import annotations

import http.client
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.serve import app as app_module
from slimdiff.serve.app import host_allowed
from slimdiff.serve.requests import MAX_BODY

from .conftest import events

BODY = b'{"steps": 1, "sampler": "ddim"}'


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """One request with exactly the given headers (a None value leaves that header out)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    sent = {"Host": parts.netloc, "Content-Type": "application/json", "Content-Length": str(len(body))}
    for name, value in {**sent, **(headers or {})}.items():
        if value is not None:
            connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        return response.status, {"events": events(payload.decode().splitlines())}
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(payload)
    return response.status, {"error": payload.decode()}  # the HTTP parser's own refusals are plain text


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        # a malformed Content-Length never reaches the app: uvicorn's HTTP parser answers 400
        ({"Content-Length": "lots"}, 400, "Invalid HTTP request"),
        ({"Content-Length": "-5"}, 400, "Invalid HTTP request"),
        ({"Content-Length": None}, 400, "Content-Length"),
        ({"Content-Length": str(200 * 2**20)}, 413, f"at most {MAX_BODY}"),
        ({"Content-Type": "text/plain"}, 415, "application/json"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "application/json"),
        ({"Content-Type": None}, 415, "application/json"),
        ({"Origin": "https://evil.example"}, 403, "evil.example"),
        ({"Origin": "null"}, 403, "not accepted"),
        ({"Host": "evil.example"}, 403, "Host"),
    ],
)
def test_requests_a_foreign_page_could_send_are_refused(live, headers, status, message):
    body = BODY if headers.get("Content-Length", "") == "" else b""
    got, answer = raw(live, "POST", "/api/generate", body, headers)
    assert got == status and message in answer["error"] and "\n" not in answer["error"]
    got, answer = raw(live, "POST", "/api/cancel", b"{}" if body else b"", headers)
    assert got == status  # cancel is guarded the same way


@pytest.mark.parametrize(
    "body", [b"{not json", b"[" * 10_000 + b"]" * 10_000, b'{"steps": ' + b"9" * 5000 + b"}"]
)
def test_bodies_json_cannot_parse_are_one_line(live, body):
    status, answer = raw(live, "POST", "/api/generate", body)
    assert status == 400 and answer["error"] == "the request is not valid JSON"


def test_rebinding_hosts_are_refused_for_the_page_and_docs_too(live):
    for path in ("/", "/api/info", "/docs", "/openapi.json"):
        assert raw(live, "GET", path, headers={"Host": "attacker.example:80"})[0] == 403
    port = live.rsplit(":", 1)[1]
    status, info = raw(live, "GET", "/api/info", headers={"Host": f"localhost:{port}"})
    assert status == 200 and "samplers" in info
    # the page's own requests carry its own origin and pass
    status, answer = raw(live, "POST", "/api/generate", BODY, {"Origin": live})
    assert status == 200 and answer["events"][-1]["event"] == "done"


def test_host_allowed_names_this_server_only():
    assert host_allowed("127.0.0.1:7860", "127.0.0.1", 7860)
    assert host_allowed("localhost:7860", "127.0.0.1", 7860)
    assert host_allowed("[::1]:7860", "127.0.0.1", 7860)
    assert not host_allowed("127.0.0.1:7861", "127.0.0.1", 7860)
    assert not host_allowed("evil.example:7860", "127.0.0.1", 7860)
    assert not host_allowed("127.0.0.1:notaport", "127.0.0.1", 7860)
    # bound to every interface: IP literals (not rebindable) pass, DNS names do not
    assert host_allowed("192.0.2.7:7860", "0.0.0.0", 7860)
    assert not host_allowed("evil.example:7860", "0.0.0.0", 7860)


def test_a_peer_that_never_sends_its_body_is_answered_408_and_holds_nothing(live, monkeypatch):
    monkeypatch.setattr(app_module, "BODY_SECONDS", 1.0)
    port = int(live.rsplit(":", 1)[1])
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(
        f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
    )
    assert raw(live, "GET", "/api/info")[0] == 200  # served meanwhile
    start = time.monotonic()
    assert stalled.recv(100).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < 10
    stalled.close()


@pytest.fixture
def no_serving(monkeypatch):
    """`slimdiff serve` up to the point where it would serve forever."""
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: [s.close() for s in sockets])


def test_serve_binds_to_localhost_unless_told_and_warns_then(pair, no_serving):
    result = CliRunner().invoke(app, ["serve", pair[0], "--port", "0"])
    assert (
        result.exit_code == 0 and "on http://127.0.0.1:" in result.output and "warning" not in result.output
    )
    result = CliRunner().invoke(app, ["serve", pair[0], "--port", "0", "--host", "0.0.0.0"])
    assert result.exit_code == 0 and "warning: bound to 0.0.0.0: other machines can reach" in result.output


def test_serve_command_refuses_a_missing_model_and_a_taken_port(tmp_path, pair, live):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing"), "--port", "0"])
    assert result.exit_code == 2 and "is neither a model folder nor a hub id" in result.output
    taken = live.rsplit(":", 1)[1]
    result = CliRunner().invoke(app, ["serve", pair[0], "--port", taken])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{taken}" in result.output
