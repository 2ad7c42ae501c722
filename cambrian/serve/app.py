"""The OpenAI-compatible app: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``.

Order of checks for a completion: API key (401) before the body is read; admission (429 over ``max_concurrency``
requests, :mod:`.admission`); body size (413) and time (408) while it is read; JSON and fields (400); model name
(404); structured output spec, compiled for the model (400); sampling and ``max_tokens`` cap (400); images (400, or
429 over the server's pixel budget); the prompt's length, then its tokens, off the generation thread (400 for text that cannot fit the context, a conversation the
template refuses or one over the context length, :mod:`.tokenizing`). A streamed request gets its HTTP status only
after its prefill succeeded, so its errors are proper HTTP errors too. A client that leaves, streaming or not, stops
its generation. Connections are guarded by :mod:`.connections` (header timeout, connection cap).

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
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..models.generate import check_generative
from .admission import Admission
from .errors import APIError, bad_request, model_not_found, server_error, too_large, unauthorized
from .images import PixelBudget, PixelReservation, image_cost
from .messages import build_conversation, sampling_from_request
from .responses import completion_body, sse_events
from .scheduler import BatchScheduler, Job
from .schema import parse_request
from .search import search_conversation
from .settings import ServeSettings
from .structured import compile_for, structured_output
from .tokenizing import PromptTokenizer


def create_app(model, settings: ServeSettings) -> FastAPI:
    """The app serving ``model``: anything with the generation contract (``cambrian.models.generate.GenerativeVLM``)."""
    check_generative(model, "serving")
    scheduler = BatchScheduler(model, settings.max_batch_size, settings.batch_window_ms, settings.max_concurrency)
    budget = PixelBudget(settings.max_pixels_in_flight)
    admission = Admission(settings.max_concurrency)
    prompts = PromptTokenizer(model)
    side = max((e.config.image_size for e in getattr(model, "encoders", ())), default=0)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(scheduler.close, settings.graceful_timeout_s)
            prompts.close()

    app = FastAPI(title="cambrian", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.settings = settings
    app.state.admission = admission

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return JSONResponse(APIError(exc.status_code, str(exc.detail), code=None).body(), status_code=exc.status_code)

    @app.exception_handler(ClientGone)
    async def _gone(request, exc):  # nobody reads it; generation was stopped
        return Response(status_code=499)

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
        except (UnicodeDecodeError, ValueError) as e:  # ValueError: also a number of over 4300 digits
            raise bad_request(f"the body is not valid JSON: {str(e)[:200]}") from None
        except RecursionError:
            raise bad_request("the body is not valid JSON: nested too deeply") from None
        req = parse_request(data)
        if req.model != settings.model_name:
            raise model_not_found(req.model, settings.model_name)
        refusal = req.unsupported()
        if refusal is not None:
            raise refusal
        structured = structured_output(req)  # (spec, field) or None; compiled now, so a bad one is a 400 here
        params = sampling_from_request(req, settings, structured=structured[0] if structured else None)
        if structured is not None:
            compile_for(model, *structured)
        messages, images = build_conversation(req, settings, reserve=reserve)
        search = None
        if req.search:
            messages, images, search = search_conversation(model, messages, images, req.search)
        prompt = prompts(messages)  # bounded, then tokenised on the tokenizer's own thread
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return bool(req.stream), include_usage, messages, prompt, images, params, search

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request)
        leave = admission.enter()  # 429 before the body is read
        pixels = PixelReservation(budget, lambda w, h: image_cost(w, h, side))

        def release() -> None:
            pixels.release()
            leave()

        try:
            with scheduler.arriving():
                body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
                stream, include_usage, messages, prompt, images, params, search = await run_in_threadpool(
                    parse, body, pixels
                )
                del body
                job = Job(
                    messages, images, params, stream, asyncio.get_running_loop(), on_release=release, prompt=prompt
                )
                scheduler.submit(job)
        except BaseException:
            release()
            raise
        cid = "chatcmpl-" + uuid.uuid4().hex
        now = int(time.time())
        if not stream:
            try:
                ev = await until_disconnected(request, job.events.get())
            except (asyncio.CancelledError, ClientGone):
                job.cancel()  # the client left: stop generating for it
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


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def until_disconnected(request: Request, awaitable):
    """``await awaitable``, or raise ``ClientGone`` as soon as the client disconnects (its body was read already)."""
    answer = asyncio.ensure_future(awaitable)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({answer, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if answer in done:
        return answer.result()
    answer.cancel()
    raise ClientGone


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The body, at most ``limit`` bytes (else 413) within ``timeout_s`` seconds (else 408: a slow body must not hold
    its admission). A body up to twice the limit is read to its end and dropped, so the client gets its 413 on a
    healthy connection; beyond that (declared or counted while a chunked body is read) reading stops at once. Memory
    stays within ``limit``."""
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout_s)
    except asyncio.TimeoutError:
        raise APIError(
            408, f"The request body did not arrive within {timeout_s:g} s.", code="request_timeout"
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
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
