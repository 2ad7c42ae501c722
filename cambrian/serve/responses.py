"""OpenAI response bodies from generation events: a ``chat.completion`` object, and the server-sent events of a
streamed answer (``chat.completion.chunk`` objects, the usage chunk, ``[DONE]``)."""

from __future__ import annotations

import json

from .errors import APIError
from .scheduler import STARTED, Job


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


def _chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict | None,
    finish_reason=None,
    usage: dict | None = None,
    **extra,
) -> str:
    """One ``chat.completion.chunk`` event: a delta (and finish reason), or with ``usage`` the usage chunk (no
    choices); ``extra``: further top-level fields (the search trace)."""
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage is None:
        body["system_fingerprint"] = None
        body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    else:
        body["choices"], body["usage"] = [], usage
    return f"data: {json.dumps(body | extra)}\n\n"


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
                        yield _chunk(cid, created, model, None, usage=_usage(item))
                    break
            item = await job.events.get()
        yield "data: [DONE]\n\n"
    finally:
        if not job.finished:
            job.cancel()
