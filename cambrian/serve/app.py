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
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..models.generate import check_generative
from .errors import APIError, bad_request, model_not_found, server_error, too_large, unauthorized
from .images import PixelBudget, PixelReservation
from .messages import build_conversation, sampling_from_request
from .responses import completion_body, sse_events
from .scheduler import BatchScheduler, Job
from .schema import parse_request
from .settings import ServeSettings


def create_app(model, settings: ServeSettings) -> FastAPI:
    """The app serving ``model``: anything with the generation contract (``cambrian.models.generate.GenerativeVLM``)."""
    check_generative(model, "serving")
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
        return bool(req.stream), include_usage, messages, images, params

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request)
        pixels = PixelReservation(budget)
        try:
            with scheduler.arriving():
                body = await read_body(request, settings.max_body_bytes)
                stream, include_usage, messages, images, params = await run_in_threadpool(parse, body, pixels)
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
            return completion_body(cid, now, settings.model_name, ev)
        try:
            first = await job.events.get()
        except asyncio.CancelledError:
            job.cancel()
            raise
        if isinstance(first, APIError):
            raise first
        return StreamingResponse(
            sse_events(job, first, cid, now, settings.model_name, include_usage),
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
