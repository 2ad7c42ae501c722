"""Sampling settings: how each row of a batch picks its next token (:class:`SamplingParams`), and one setting per
prompt from what a caller passes (:func:`resolve_sampling`)."""

from __future__ import annotations

import dataclasses

from ...typed import Int, Num, OptInt, StrTuple, typed_config


@typed_config(label="sampling", frozen=True)
class SamplingParams:
    """How to pick each next token, checked on construction (one ``ConfigError`` naming the field).

    Args:
        max_new_tokens: the longest answer in tokens.
        temperature: 0 is greedy (the evaluation default); sampled rows divide their logits by it.
        top_p: nucleus filter (1 = off).
        top_k: keep the k most probable tokens (0 = off).
        repetition_penalty: 1 = off; > 1 discourages tokens already in the prompt or the answer (a positive logit
            is divided by it, a negative one multiplied).
        seed: makes sampling reproducible, whatever else is in the batch.
        stop: generation stops before the first occurrence of any of these strings (not included in the text).
    """

    max_new_tokens: Int(ge=1) = 128
    temperature: Num(ge=0, le=100) = 0.0
    top_p: Num(gt=0, le=1) = 1.0
    top_k: Int(ge=0) = 0
    repetition_penalty: Num(gt=0, le=100) = 1.0
    seed: OptInt(ge=0, lt=2**63) = None
    stop: StrTuple = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes) -> SamplingParams:
        return dataclasses.replace(self, **changes)


def resolve_sampling(sampling, max_new_tokens: int | None, n: int) -> list[SamplingParams]:
    """One ``SamplingParams`` per prompt: ``sampling`` may be None (greedy), one ``SamplingParams`` for all, or a
    list with one per prompt. ``max_new_tokens``, when given, overrides the params' own."""
    if sampling is None:
        params = [SamplingParams(max_new_tokens=128 if max_new_tokens is None else max_new_tokens)] * n
    elif isinstance(sampling, SamplingParams):
        params = [sampling] * n
    else:
        params = list(sampling)
        if len(params) != n or not all(isinstance(p, SamplingParams) for p in params):
            raise ValueError(f"sampling: expected one SamplingParams per prompt ({n}), got {len(params)} items")
    if max_new_tokens is not None and sampling is not None:
        params = [p.replace(max_new_tokens=max_new_tokens) for p in params]
    return params
