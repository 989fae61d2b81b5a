"""The web side of `slimdiff serve`: a FastAPI app on uvicorn, bound to 127.0.0.1 unless told otherwise.

`GET /` the page, `GET /api/info` what the models offer and cost, `POST /api/generate` one request answered as
server-sent events (`start`, `progress` per solver step, `result` per model, then `done`, `cancelled` or
`error`), `POST /api/cancel` stops it between two steps; `/docs` and `/openapi.json` describe the API.
One generation runs at a time: a second is answered 409 (a queue would hide a wait the page cannot show).

Any web page the user's browser opens can send requests to 127.0.0.1, so `Guard` checks every request before
the app sees it:
- the Host header must name this server (a loopback name, the bound address or an IP literal), which defeats
  DNS rebinding; a browser's Origin, when sent, must name this server too;
- a POST must say `Content-Type: application/json` — a cross-site page can only send that after a CORS
  preflight, which this server never grants (multipart uploads would need none: images come as data URLs) —
  with a Content-Length of at most `MAX_BODY` bytes, sent within `BODY_SECONDS`.
Bad requests get a 4xx status and `{"error": one line}`; bugs 500 and a line, the traceback in the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
from importlib import resources
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slimdiff.errors import ModelError, SlimdiffError
from slimdiff.serve.requests import MAX_BODY, GenerateRequest
from slimdiff.serve.server import Cancelled, Generator

log = logging.getLogger("slimdiff.serve")
BODY_SECONDS = 20.0  # a peer that promises a body and never sends it is answered 408 after this
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
BUSY = "a generation is running: wait for it to finish or cancel it (POST /api/cancel)"


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


def one_line(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status_code=status)


class Guard:
    """ASGI middleware: refuses what a foreign page or a stalled peer could send (see the module's doc), and
    reads a POST's body — bounded in size and time — before the app runs."""

    def __init__(self, app, host: str, port: int):
        self.app, self.host, self.port = app, host, port

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_allowed(headers.get("host", ""), self.host, self.port):
            return 403, "unknown Host: open the page at the address slimdiff serve printed"
        origin = headers.get("origin")
        if origin is not None and not host_allowed(urlsplit(origin).netloc, self.host, self.port):
            return 403, f"requests from {origin[:100]} are not accepted"
        if scope["method"] != "POST":
            return None
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return 415, "send the request as JSON (Content-Type: application/json)"
        length = headers.get("content-length", "")
        if not length.isdigit():
            return 400, "Content-Length must be a byte count"
        if int(length) > MAX_BODY:
            return 413, f"the request is {length} bytes; at most {MAX_BODY} are accepted"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = self.refusal(scope)
        if refused is not None:
            return await one_line(*refused)(scope, receive, send)
        if scope["method"] == "POST":
            body = b""
            try:
                while True:
                    message = await asyncio.wait_for(receive(), BODY_SECONDS)
                    body += message.get("body", b"")
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        break
            except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                return await one_line(408, f"the request body did not arrive within {BODY_SECONDS:g} s")(
                    scope, receive, send
                )
            try:  # parsed here too, so that every way JSON fails (depth, huge integers) reads the same
                json.loads(body)
            except (ValueError, RecursionError):
                return await one_line(400, "the request is not valid JSON")(scope, receive, send)
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect a streaming response listens for

    return replay


def _event_stream(generator: Generator, job) -> StreamingResponse:
    """Run `job` in a worker thread (the event loop keeps answering /api/info and /api/cancel) and stream what
    it reports; a page that goes away cancels it."""
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()

    def emit(event: dict | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def work() -> None:
        try:
            generator.run(job, emit)
        except Cancelled as stop:
            emit({"event": "cancelled", "message": str(stop)})
        except SlimdiffError as error:
            emit({"event": "error", "message": str(error).splitlines()[0]})
        except Exception as error:  # a bug: logged with its traceback, one line on the page
            log.exception("generation failed")
            emit(
                {
                    "event": "error",
                    "message": f"internal error ({type(error).__name__}); see the server's log",
                }
            )
        finally:
            generator.cancelled.clear()
            generator.busy.release()
            emit(None)

    async def events():
        finished = False
        try:
            while (event := await queue.get()) is not None:
                yield f"event: {event['event']}\ndata: {json.dumps(event)}\n\n"
            finished = True
        finally:
            if not finished:  # the page went away: stop its job (and never the next one)
                generator.cancel()

    threading.Thread(target=work, daemon=True, name="slimdiff-generate").start()
    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def make_app(generator: Generator, host: str = "127.0.0.1", port: int = 7860) -> FastAPI:
    """The app serving `generator`, accepting only requests addressed to `host`:`port`."""
    app = FastAPI(title="slimdiff serve", redoc_url=None)
    app.add_middleware(Guard, host=host, port=port)
    page = resources.files("slimdiff.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return one_line(400, f"{where or 'the request'}: {first['msg']}")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own and its routing's (404, 405)
    async def refused(request, error: StarletteHTTPException) -> JSONResponse:
        return one_line(error.status_code, str(error.detail))

    @app.exception_handler(SlimdiffError)
    async def bad(request, error: SlimdiffError) -> JSONResponse:
        return one_line(400, str(error))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/info", summary="what the models offer (solvers, classes, image size) and cost")
    def info() -> dict:
        return generator.info()

    @app.post(
        "/api/generate",
        summary="generate: server-sent events start, progress, result (per model), then done / cancelled / error",
        response_class=StreamingResponse,
        responses={400: {"description": "a bad parameter, one line"}, 409: {"description": BUSY}},
    )
    async def generate(request: GenerateRequest) -> StreamingResponse:
        if not generator.busy.acquire(blocking=False):
            raise HTTPException(409, BUSY)
        try:
            generator.cancelled.clear()
            job = generator.prepare(request)
        except BaseException:
            generator.busy.release()
            raise
        return _event_stream(generator, job)

    @app.post("/api/cancel", summary="stop the running generation after its current step")
    def cancel() -> dict:
        return {"cancelled": generator.cancel()}

    return app


def make_server(generator: Generator, host: str = "127.0.0.1", port: int = 7860):
    """(uvicorn server, its listening socket) for `generator` on (host, port); port 0 picks a free one
    (`sock.getsockname()`). Run it with `server.run(sockets=[sock])`; Ctrl-C cancels a running generation,
    so that its event stream ends and the server stops."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            generator.cancel()
            super().handle_exit(sig, frame)

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ModelError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port"
        ) from None
    app = make_app(generator, host, sock.getsockname()[1])
    return Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5)), sock
