"""The OpenAI-compatible app: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``.

Order of checks for a completion: API key (401) before the body is read; body size (413) while it is read; JSON and
fields (400); model name (404); sampling and ``max_tokens`` cap (400); images (400, or 429 over the server's
decoded-pixel budget); concurrency (429); then the
prompt on the worker (400 for a conversation the template refuses or one over the context length). A streamed request
gets its HTTP status only after its prefill succeeded, so its errors are proper HTTP errors too.

Shutdown (Ctrl-C / SIGTERM): uvicorn stops accepting connections and waits for the requests in flight (up to
``graceful_timeout_s``), then the worker finishes whatever was still queued and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UserError
from .errors import APIError, bad_request, model_not_found, server_error, too_large, unauthorized
from .images import PixelBudget, PixelReservation
from .messages import build_conversation, sampling_from_request
from .scheduler import STARTED, BatchScheduler, Job
from .schema import parse_request
from .search import search_conversation
from .settings import ServeSettings


def create_app(model, settings: ServeSettings) -> FastAPI:
    scheduler = BatchScheduler(model, settings.max_batch_size, settings.batch_window_ms, settings.max_concurrency)
    budget = PixelBudget(settings.max_pixels_in_flight)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(scheduler.close, settings.graceful_timeout_s)

    app = FastAPI(title="cambrian", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.settings = settings

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return JSONResponse(APIError(exc.status_code, str(exc.detail), code=None).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        return JSONResponse(server_error(f"internal error: {type(exc).__name__}").body(), status_code=500)

    def check_auth(request: Request) -> None:
        if not settings.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise unauthorized()

    def model_card() -> dict:
        return {"id": settings.model_name, "object": "model", "created": created, "owned_by": "cambrian"}

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": settings.model_name,
            "in_flight": scheduler.inflight,
            "running": scheduler.running,
            "image_pixels_in_flight": budget.used,
        }

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_auth(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        check_auth(request)
        if model_id != settings.model_name:
            raise model_not_found(model_id, settings.model_name)
        return model_card()

    def parse(body: bytes, reserve: PixelReservation):
        """JSON, fields, model, sampling, images (in a worker thread: a large body does not hold the event loop).
        Returns only what the request needs from here on, so the base64 payloads can be freed."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise bad_request(f"the body is not valid JSON: {e}") from None
        req = parse_request(data)
        if req.model != settings.model_name:
            raise model_not_found(req.model, settings.model_name)
        refusal = req.unsupported()
        if refusal is not None:
            raise refusal
        params = sampling_from_request(req, settings)
        messages, images = build_conversation(req, settings, reserve=reserve)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        search = None
        if req.search:
            messages, images, search = search_conversation(model, messages, images, req.search)
        return bool(req.stream), include_usage, messages, images, params, search

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request)
        pixels = PixelReservation(budget)
        try:
            with scheduler.arriving():
                body = await read_body(request, settings.max_body_bytes)
                stream, include_usage, messages, images, params, search = await run_in_threadpool(parse, body, pixels)
                del body
                job = Job(messages, images, params, stream, asyncio.get_running_loop(), on_release=pixels.release)
                scheduler.submit(job)
        except BaseException:
            pixels.release()
            raise
        cid = "chatcmpl-" + uuid.uuid4().hex
        now = int(time.time())
        if not stream:
            try:
                ev = await job.events.get()
            except asyncio.CancelledError:
                job.cancel()
                raise
            if isinstance(ev, APIError):
                raise ev
            return completion_body(cid, now, settings.model_name, ev) | ({"search": search} if search else {})
        try:
            first = await job.events.get()
        except asyncio.CancelledError:
            job.cancel()
            raise
        if isinstance(first, APIError):
            raise first
        return StreamingResponse(
            sse_events(job, first, cid, now, settings.model_name, include_usage, search),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (else 413). A body up to twice the limit is read to its end and dropped, so
    the client gets its 413 on a healthy connection; beyond that (declared or counted while a chunked body is read)
    reading stops at once. Memory stays within ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > 2 * limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 2 * limit:
            raise too_large(limit)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise too_large(limit)
    return b"".join(chunks)


def _usage(ev) -> dict:
    return {
        "prompt_tokens": ev.prompt_tokens,
        "completion_tokens": ev.completion_tokens,
        "total_tokens": ev.prompt_tokens + ev.completion_tokens,
    }


def completion_body(cid: str, created: int, model: str, ev) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ev.text},
                "logprobs": None,
                "finish_reason": ev.finish_reason,
            }
        ],
        "usage": _usage(ev),
    }


def _chunk(cid: str, created: int, model: str, delta: dict, finish_reason=None, **extra) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


async def sse_events(job: Job, first, cid: str, created: int, model: str, include_usage: bool, search=None):
    """Server-sent events: a role chunk (with the search's trace when the request searched), content chunks, a chunk
    with the finish reason, (usage), ``[DONE]``. A client that disconnects cancels its row."""
    try:
        extra = {"search": search} if search else {}
        yield _chunk(cid, created, model, {"role": "assistant", "content": ""}, **extra)
        item = first
        while True:
            if item is not STARTED:
                if isinstance(item, APIError):
                    yield f"data: {json.dumps(item.body())}\n\n"
                    break
                if item.delta:
                    yield _chunk(cid, created, model, {"content": item.delta})
                if item.finished:
                    yield _chunk(cid, created, model, {}, item.finish_reason)
                    if include_usage:
                        body = {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": _usage(item),
                        }
                        yield f"data: {json.dumps(body)}\n\n"
                    break
            item = await job.events.get()
        yield "data: [DONE]\n\n"
    finally:
        if not job.finished:
            job.cancel()


# ---- running it ------------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn (bound here, not by uvicorn, so a busy port is an exception rather than
    uvicorn's ``sys.exit`` and ``port=0`` yields the real port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on connections accepted from such a socket, and without it
    # every response on a kept-alive connection stalls ~40 ms (Nagle against the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def make_server(
    app: FastAPI,
    host: str,
    port: int,
    settings: ServeSettings,
    log_level: str = "warning",
    sock: socket.socket | None = None,
):
    """(uvicorn.Server, bound socket); ``sock``: one bound already (``bind_socket``)."""
    import uvicorn

    # connections beyond twice the request limit get uvicorn's 503 before their body is read (bounded memory)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        limit_concurrency=2 * settings.max_concurrency + 8,
    )
    return uvicorn.Server(config), (sock if sock is not None else bind_socket(host, port))


def socket_url(sock: socket.socket) -> str:
    h, p = sock.getsockname()[:2]
    return f"http://{f'[{h}]' if ':' in h else h}:{p}"


def run_server(
    model,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    sock: socket.socket | None = None,
    on_ready=None,
) -> None:
    """Serve until Ctrl-C / SIGTERM (in-flight requests finish first). ``sock``: a socket from ``bind_socket`` (bind
    before loading the model to fail fast on a busy port); ``on_ready(url)`` is called once the app has started."""
    server, sock = make_server(create_app(model, settings), host, port, settings, log_level, sock)
    if on_ready is not None:

        def announce():
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                on_ready(socket_url(sock))

        threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


class ServerThread:
    """The server in a background thread (tests, benchmarks): ``with ServerThread(model, settings) as srv:`` then
    ``srv.base_url`` (".../v1"). Leaving the block shuts down gracefully."""

    def __init__(
        self, model, settings: ServeSettings, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ):
        self.app = create_app(model, settings)
        self.server, self._sock = make_server(self.app, host, port, settings, log_level)
        self.url = socket_url(self._sock)
        self.base_url = self.url + "/v1"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
