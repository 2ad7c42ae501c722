"""The caller side of the generation contract, built once on what a model implements (``prefill``, ``prompt_ids``,
``stop_token_ids``, ``context_length``, ``tokenizer``): a model class inherits :class:`GenerationMixin` and gets
``generate_events``, ``generate_text``, ``stream_text``, ``chat``, ``score_options`` and ``next_token_logits``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ...constants import IMAGE_TOKEN
from .decode import DecodeRun
from .logits import RowProcessor
from .sampling import SamplingParams, resolve_sampling
from .scoring import option_logprobs


class GenerationMixin:
    @torch.no_grad()
    def generate_events(
        self,
        texts: Sequence,
        images: Sequence[Sequence] | None = None,
        max_new_tokens: int | None = None,
        system: str | None = None,
        sampling: SamplingParams | Sequence[SamplingParams] | None = None,
        stream: bool | Sequence[bool] = False,
        step_events: bool = False,
        processors: Sequence[RowProcessor | None] | None = None,
    ) -> DecodeRun:
        """Prefill now (errors raise here), then a :class:`DecodeRun`: an iterator of per-row events (text deltas for
        the ``stream`` rows, then each row's final text and finish reason; ``step_events``: step boundaries too,
        where other prefilled runs may join). ``sampling``: greedy when None, one :class:`SamplingParams` for all
        prompts, or one per prompt; ``max_new_tokens`` (default 128) overrides the params' own when given;
        ``processors``: one :class:`RowProcessor` (or None) per prompt."""
        params = resolve_sampling(sampling, max_new_tokens, len(texts))
        pre = self.prefill(texts, images, system=system, use_cache=True)
        return DecodeRun(
            pre,
            params,
            self.tokenizer,
            self.stop_token_ids,
            stream=stream,
            max_positions=self.context_length,
            step_events=step_events,
            processors=processors,
        )

    def generate_text(
        self,
        texts: Sequence,
        images: Sequence[Sequence] | None = None,
        max_new_tokens: int | None = None,
        system: str | None = None,
        sampling: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[str]:
        """Batched answers (left padding, KV cache); greedy unless ``sampling`` says otherwise. ``texts[i]`` is a
        user turn or a conversation with one ``<image>`` per image in ``images[i]``."""
        out: list[str] = [""] * len(texts)
        for ev in self.generate_events(texts, images, max_new_tokens, system, sampling):
            if ev.finished:
                out[ev.row] = ev.text
        return out

    def stream_text(
        self,
        text,
        images: Sequence = (),
        max_new_tokens: int | None = None,
        system: str | None = None,
        sampling: SamplingParams | None = None,
    ) -> Iterator[str]:
        """The answer to one prompt as text deltas while it is generated (they add up to ``generate_text``'s)."""
        for ev in self.generate_events([text], [list(images)], max_new_tokens, system, sampling, stream=True):
            if ev.delta:
                yield ev.delta

    def chat(
        self,
        text: str,
        images: Sequence = (),
        max_new_tokens: int | None = None,
        system: str | None = None,
        sampling: SamplingParams | None = None,
    ) -> str:
        """One answer; prepends one ``<image>\\n`` per image when the text has no placeholders. ``max_new_tokens``:
        256 by default, or the sampling params' own."""
        if sampling is None and max_new_tokens is None:
            max_new_tokens = 256
        if images and IMAGE_TOKEN not in text:
            text = (IMAGE_TOKEN + "\n") * len(images) + text
        return self.generate_text([text], [list(images)], max_new_tokens, system, sampling)[0]

    @torch.no_grad()
    def next_token_logits(
        self, texts: Sequence, images: Sequence[Sequence] | None = None, system: str | None = None
    ) -> torch.Tensor:
        """Logits ``[B, V]`` of the first answer token for each prompt (scoring, probes); batched like generation."""
        return self.prefill(texts, images, system=system, use_cache=False).logits

    def answer_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as (part of) an answer: no special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    @torch.no_grad()
    def score_options(
        self,
        texts: Sequence,
        images: Sequence[Sequence] | None,
        options: Sequence[Sequence[str]],
        system: str | None = None,
    ) -> list[list[float]]:
        """Log-likelihood of each option of ``options[i]`` as the answer to prompt ``i`` (the sum over its tokens);
        each prompt is prefilled once and its KV cache shared by its options."""
        ids = [[self.answer_ids(o) for o in opts] for opts in options]
        need_cache = any(len(o) > 1 for opts in ids for o in opts)
        return option_logprobs(self.prefill(texts, images, system=system, use_cache=need_cache), ids)
