"""Chat completions through any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, this project's server...).

Replies can be constrained to a JSON schema (``response_format``; ``response_format="json_object"`` asks only for
JSON, ``"none"`` sends no format for endpoints that refuse the field).

The API key is read from an environment variable (its *name* is the option, never the value); it is never
written to a file, a log line or an error message (:func:`redact`).
"""

from __future__ import annotations

import os

from ...errors import InputError, UserError
from .ratelimit import RateLimiter


class LLMError(Exception):
    """A failed call; ``permanent`` False means worth retrying in a later run (timeouts, 429, 5xx)."""

    def __init__(self, reason: str, detail: str = "", permanent: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.permanent = permanent


class LLMAuthError(UserError):
    """The endpoint refused the key: stop the run (every further call would fail the same way)."""


RESPONSE_FORMATS = ("json_schema", "json_object", "none")


class OpenAIChat:
    """``chat(system, user, schema=None) -> str`` with the ``openai`` client (its retries with backoff on 429/5xx),
    one request per ``limiter`` interval. With a ``schema`` the request asks for it as ``response_format`` (see
    ``response_format``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.7,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_retries: int = 2,
        rpm: float = 60.0,
        limiter: RateLimiter | None = None,
        response_format: str = "json_schema",
    ):
        try:
            import openai
        except ImportError:
            raise UserError("the data engine needs the 'openai' package: pip install 'cambrian[data]'") from None
        self._openai = openai
        if response_format not in RESPONSE_FORMATS:
            raise InputError(f"response format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}")
        self.response_format = response_format
        self._key = os.environ.get(api_key_env) or ""
        self.key_source = f"${api_key_env}" if self._key else f"none (${api_key_env} is not set)"
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.limiter = limiter or RateLimiter.per_minute(rpm)
        # a local server usually wants no key; the client insists on a non-empty string
        self.client = openai.OpenAI(
            base_url=base_url, api_key=self._key or "no-key", timeout=timeout, max_retries=max_retries
        )

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _format(self, schema: dict | None, name: str) -> dict:
        if schema is None or self.response_format == "none":
            return {}
        if self.response_format == "json_object":
            return {"response_format": {"type": "json_object"}}
        # strict False: OpenAI's strict subset refuses length bounds; a constraining server enforces them anyway
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}
        }

    def chat(self, system: str, user: str, schema: dict | None = None, name: str = "reply") -> str:
        oa = self._openai
        self.limiter.wait()
        try:
            r = self.client.chat.completions.create(
                model=self.model,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                **self._format(schema, name),
            )
        except oa.AuthenticationError as e:
            raise LLMAuthError(
                f"{self.base_url} refused the API key ({self.key_source}): {self.redact(str(e))[:160]}"
            ) from None
        except oa.PermissionDeniedError as e:
            raise LLMAuthError(f"{self.base_url}: permission denied: {self.redact(str(e))[:160]}") from None
        except (oa.APITimeoutError, oa.APIConnectionError) as e:
            raise LLMError("llm_unreachable", self.redact(str(e))[:160]) from None
        except oa.RateLimitError as e:
            raise LLMError("llm_rate_limited", self.redact(str(e))[:160]) from None
        except oa.APIStatusError as e:
            permanent = 400 <= e.status_code < 500 and e.status_code not in (408, 409, 429)
            raise LLMError(f"llm_http_{e.status_code}", self.redact(str(e))[:160], permanent=permanent) from None
        except oa.APIError as e:  # e.g. a 200 whose body is not a completion
            raise LLMError("llm_bad_response", self.redact(str(e))[:160]) from None
        try:
            content = r.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise LLMError("llm_bad_response", "no choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise LLMError("llm_empty_reply", permanent=True)
        return content
