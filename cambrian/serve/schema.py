"""``POST /v1/chat/completions`` request body (the OpenAI fields this server implements, plus vLLM's ``top_k``,
``repetition_penalty`` and ``structured_outputs``). Unknown fields are ignored, as OpenAI-compatible servers do; known
fields this server cannot honour (``n > 1``, penalties, logprobs, tools, structural tags) are refused with a 400
rather than ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import APIError, bad_request


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Body):
    url: str
    detail: str | None = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class JSONSchemaFormat(_Body):
    """OpenAI's ``response_format.json_schema``; the schema is always enforced (``strict`` is accepted either way)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = Field("response", max_length=64)
    description: str | None = None
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StructuredOutputs(_Body):
    """vLLM's ``structured_outputs`` extension (exactly one of its fields)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    json_: dict | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    structural_tag: Any = None


class ChatCompletionRequest(_Body):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=100.0)
    n: int | None = 1
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    tools: list | None = None
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    search: bool | dict | None = None  # guided visual search before the answer (cambrian.serve.search)

    def unsupported(self) -> APIError | None:
        """The first field asking for something this server does not do, as a 400."""
        if self.n not in (None, 1):
            return bad_request("only n=1 is supported", param="n")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                return bad_request(f"{name} is not supported (use repetition_penalty)", param=name)
        if self.logprobs:
            return bad_request("logprobs are not supported", param="logprobs")
        if self.tools:
            return bad_request("tools are not supported", param="tools")
        if self.structured_outputs is not None and self.structured_outputs.structural_tag is not None:
            return bad_request("structural_tag is not supported", param="structured_outputs.structural_tag")
        if isinstance(self.stop, list) and len(self.stop) > 16:
            return bad_request("at most 16 stop strings", param="stop")
        if isinstance(self.stop, list) and not all(self.stop):
            return bad_request("stop strings must not be empty", param="stop")
        return None


def parse_request(data) -> ChatCompletionRequest:
    """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()) if not str(x).startswith("function-"))
        raise bad_request(f"{loc or 'body'}: {err.get('msg', 'invalid value')}", param=loc or None) from None
