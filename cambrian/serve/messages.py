"""OpenAI chat messages -> the model's conversation: ``[{"role", "content"}]`` with one ``<image>`` tag where each
``image_url`` part was (the chat template moves a turn's single image tag to the turn's start, as the official
protocol does), plus the decoded images in tag order; and the request's sampling settings."""

from __future__ import annotations

from ..constants import IMAGE_TOKEN
from ..models.generate import SamplingParams
from .errors import bad_request
from .images import load_image_url
from .schema import ChatCompletionRequest
from .settings import ServeSettings

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def build_conversation(req: ChatCompletionRequest, settings: ServeSettings, reserve=None) -> tuple[list[dict], list]:
    """``reserve(w, h, param)``: called before each image is decoded (the server's pixel budget)."""
    messages: list[dict] = []
    images: list = []
    for i, m in enumerate(req.messages):
        role = _ROLES[m.role]
        if m.content is None:
            raise bad_request(f"messages[{i}]: content is required", param=f"messages[{i}].content")
        parts = [m.content] if isinstance(m.content, str) else m.content
        pieces: list[str] = []
        for j, part in enumerate(parts):
            where = f"messages[{i}].content" + ("" if isinstance(m.content, str) else f"[{j}]")
            if isinstance(part, str) or part.type == "text":
                text = part if isinstance(part, str) else part.text
                if IMAGE_TOKEN in text:
                    raise bad_request(
                        f"{where}: the text contains the reserved tag {IMAGE_TOKEN}; send images as image_url parts",
                        param=where,
                    )
                pieces.append(text)
                continue
            if role != "user":
                raise bad_request(f"{where}: images are accepted in user messages only", param=where)
            if len(images) >= settings.max_images:
                raise bad_request(f"{where}: at most {settings.max_images} images per request", param=where)
            images.append(
                load_image_url(
                    part.image_url.url,
                    settings.max_image_pixels,
                    settings.max_body_bytes,
                    settings.local_image_root,
                    param=where,
                    reserve=reserve,
                    max_aspect=settings.max_image_aspect,
                )
            )
            pieces.append(IMAGE_TOKEN)
        messages.append({"role": role, "content": "\n".join(pieces)})
    if req.messages[-1].role != "user":
        raise bad_request("messages: the conversation must end with a user turn", param="messages")
    return messages, images


def sampling_from_request(req: ChatCompletionRequest, settings: ServeSettings) -> SamplingParams:
    """The request's sampling settings; ``max_tokens`` (or ``max_completion_tokens``) above the server's cap is a
    400, and a request without one gets the cap; without ``temperature`` the server's default applies (1.0, as
    OpenAI's API, unless ``--default-temperature`` says otherwise)."""
    asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if asked is not None and asked > settings.max_tokens_cap:
        field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        raise bad_request(f"{field}={asked} is above this server's limit of {settings.max_tokens_cap}", param=field)
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    try:
        return SamplingParams(
            max_new_tokens=asked if asked is not None else settings.max_tokens_cap,
            temperature=settings.default_temperature if req.temperature is None else float(req.temperature),
            top_p=1.0 if req.top_p is None else float(req.top_p),
            top_k=req.top_k or 0,
            repetition_penalty=1.0 if req.repetition_penalty is None else float(req.repetition_penalty),
            seed=req.seed,
            stop=stop,
        )
    except ValueError as e:
        raise bad_request(str(e)) from None
