"""Model adapters for the evaluation harness (the ``EvalModel`` contract of ``cambrian.eval.api``).

- ``CambrianEvalModel(model)``: wraps a ``CambrianModel`` (``generate_text(texts, images, max_new_tokens,
  system)``); builds ``"<image>\\n" * len(images) + prompt`` (image first, the official protocol). Its
  ``score_options`` scores candidate replies (``--mc likelihood``).
- ``OpenAIChatModel(base_url, model)``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang,
  llama.cpp server, a hosted API). Images go as base64 PNG ``data:`` URLs in ``image_url`` parts before the
  text part. Uses only ``urllib``; requests of a batch are sent concurrently (``concurrency`` threads).
- ``load_eval_model(spec)``: ``openai:<base_url>#<model_name>``, or whatever ``CambrianModel.load`` takes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..constants import IMAGE_TOKEN
from ..errors import InputError
from .api import GenerationOptions, GenerationRequest


def apply_stop(text: str, stop: Sequence[str]) -> str:
    """Cut the text at the first occurrence of any stop string."""
    cut = len(text)
    for s in stop or ():
        k = text.find(s)
        if s and k != -1:
            cut = min(cut, k)
    return text[:cut]


class CambrianEvalModel:
    """EvalModel over any ``VLM`` (``cambrian.models.vlm``; greedy decoding, ``temperature`` must be 0)."""

    def __init__(self, model, name: str | None = None, system: str | None = None):
        self.model = model
        self.name = name or type(model).__name__
        self.system = system

    @staticmethod
    def build_text(req: GenerationRequest) -> str:
        return f"{IMAGE_TOKEN}\n" * len(req.images) + req.prompt

    def generate(self, requests: Sequence[GenerationRequest], options: GenerationOptions) -> list[str]:
        if options.temperature and options.temperature > 0:
            raise ValueError("CambrianEvalModel decodes greedily; temperature > 0 is not supported")
        texts = [self.build_text(r) for r in requests]
        images = [list(r.images) for r in requests]
        outs = self.model.generate_text(texts, images, max_new_tokens=options.max_new_tokens, system=self.system)
        return [apply_stop(o, options.stop).strip() for o in outs]

    def score_options(
        self, requests: Sequence[GenerationRequest], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Log-likelihood of each candidate reply to each request (the model's ``score_options``: the summed
        log-probability of the candidate's tokens after the generation prompt; ``--mc likelihood``)."""
        texts = [self.build_text(r) for r in requests]
        images = [list(r.images) for r in requests]
        return self.model.score_options(texts, images, candidates, system=self.system)


def image_to_data_url(image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIChatModel:
    """EvalModel over an OpenAI-compatible chat endpoint. ``api_key`` defaults to ``$OPENAI_API_KEY`` (may be
    empty for local servers). Retries transient HTTP/connection errors ``retries`` times with backoff."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        concurrency: int = 4,
        retries: int = 2,
        system: str | None = None,
    ):
        base = base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            self.url = base
        elif base.endswith("/v1"):
            self.url = base + "/chat/completions"
        else:
            self.url = base + "/v1/chat/completions"
        self.model = model
        self.name = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout, self.concurrency, self.retries, self.system = timeout, max(1, concurrency), retries, system

    def payload(self, req: GenerationRequest, options: GenerationOptions) -> dict:
        content = [{"type": "image_url", "image_url": {"url": image_to_data_url(im)}} for im in req.images]
        content.append({"type": "text", "text": req.prompt})
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": content}
        ]
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
        }
        if options.stop:
            body["stop"] = list(options.stop)
        return body

    def _post(self, body: dict) -> str:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        err: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    out = json.loads(resp.read().decode("utf-8"))
                return out["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                err = e
                if e.code < 500 and e.code != 429:  # client errors are not retried
                    raise RuntimeError(f"{self.url}: HTTP {e.code}: {e.read()[:300]!r}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                err = e
            time.sleep(min(8.0, 0.5 * 2**attempt))
        raise RuntimeError(f"{self.url}: request failed after {self.retries + 1} tries: {err}")

    def generate(self, requests: Sequence[GenerationRequest], options: GenerationOptions) -> list[str]:
        bodies = [self.payload(r, options) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(bodies)))) as ex:
            outs = list(ex.map(self._post, bodies))  # map keeps request order
        return [apply_stop(o, options.stop).strip() for o in outs]


def load_eval_model(spec: str, device: str | None = None, name: str | None = None, towers=None):
    """``openai:<base_url>#<model>`` → OpenAIChatModel; anything else (checkpoint dir, preset name, config
    file, hub id) → ``CambrianModel.load(spec)`` wrapped in CambrianEvalModel."""
    if spec.startswith("openai:"):
        rest = spec[len("openai:") :]
        base, _, model = rest.partition("#")
        if not base or not model:
            raise InputError(
                "expected openai:<base_url>#<model_name>, e.g. openai:http://127.0.0.1:8000/v1#cambrian-8b"
            )
        return OpenAIChatModel(base, model)
    from ..models.vlm import load_vlm  # lazy: heavy imports

    model = load_vlm(spec, towers=towers)  # any VLM: a CambrianModel, or a registered model source's
    label = name or (Path(spec).resolve().name if Path(spec).is_dir() else spec)
    if device:
        model = model.to(device)
    model.eval()
    return CambrianEvalModel(model, name=label)
