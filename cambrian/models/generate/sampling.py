"""Sampling settings: how each row of a batch picks its next token (:class:`SamplingParams`), and one setting per
prompt from what a caller passes (:func:`resolve_sampling`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. ``temperature=0`` is greedy (the evaluation default); ``top_k=0`` and
    ``top_p=1`` switch those filters off; ``repetition_penalty=1`` is off (>1 discourages tokens already in the
    prompt or the answer: a positive logit is divided by it, a negative one multiplied); ``seed`` makes sampling
    reproducible; generation stops before the first occurrence of any ``stop`` string (not included in the text)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        _check(
            isinstance(self.max_new_tokens, int)
            and not isinstance(self.max_new_tokens, bool)
            and self.max_new_tokens >= 1,
            "max_new_tokens",
            self.max_new_tokens,
            "an integer >= 1",
        )
        _check(
            _is_number(self.temperature) and 0.0 <= self.temperature <= 100.0,
            "temperature",
            self.temperature,
            "a number in [0, 100] (0 = greedy)",
        )
        _check(_is_number(self.top_p) and 0.0 < self.top_p <= 1.0, "top_p", self.top_p, "a number in (0, 1]")
        _check(
            isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 0,
            "top_k",
            self.top_k,
            "an integer >= 0 (0 = off)",
        )
        _check(
            _is_number(self.repetition_penalty) and 0.0 < self.repetition_penalty <= 100.0,
            "repetition_penalty",
            self.repetition_penalty,
            "a number in (0, 100] (1 = off)",
        )
        _check(
            self.seed is None
            or (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63),
            "seed",
            self.seed,
            "an integer in [0, 2^63)",
        )
        _check(all(isinstance(s, str) and s for s in stop), "stop", self.stop, "non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes) -> SamplingParams:
        return dataclasses.replace(self, **changes)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x  # not NaN


def _check(ok: bool, name: str, value, what: str) -> None:
    if not ok:
        raise ValueError(f"sampling: {name} must be {what}, got {value!r}")


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
