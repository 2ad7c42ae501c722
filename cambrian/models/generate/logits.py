"""Logit processing, each row of a batch with its own settings.

Order for a row (as in HF ``generate`` and vLLM): the row's :class:`RowProcessor` (a per-request constraint such
as a grammar mask), repetition penalty, then for sampled rows temperature, top-k, top-p and one draw from the row's
own ``torch.Generator`` (seeded from ``seed``, so a seed reproduces an answer whatever else is in the batch);
greedy rows take the ``argmax``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from .sampling import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """``logits [B, V]``, ``seen [B, V]`` bool (tokens in the prompt or the answer so far), ``penalty [B]``: seen
    tokens' positive logits are divided by the penalty and negative ones multiplied (CTRL, as HF and vLLM)."""
    pen = penalty.to(logits.dtype)[:, None]
    return torch.where(seen, torch.where(logits > 0, logits / pen, logits * pen), logits)


def top_k_mask(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Keep each row's ``k`` largest logits (ties at the k-th value are kept), the rest become -inf; ``k=0`` keeps
    all."""
    V = logits.shape[-1]
    kk = k.clamp(min=0, max=V)
    if bool((kk == 0).all()):
        return logits
    top = logits.topk(int(kk.max()), dim=-1).values
    thr = top.gather(1, (kk.clamp(min=1) - 1)[:, None])
    thr = torch.where((kk == 0)[:, None], torch.full_like(thr, float("-inf")), thr)
    return logits.masked_fill(logits < thr, float("-inf"))


def top_p_mask(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Nucleus filter: keep each row's smallest set of most probable tokens whose probabilities add up to at least
    ``p`` (a token is dropped when the tokens ranked above it already reach ``p``; the first is always kept)."""
    if bool((p >= 1.0).all()):
        return logits
    srt, idx = logits.sort(dim=-1, descending=True)
    probs = srt.float().softmax(-1)
    before = probs.cumsum(-1) - probs
    drop_sorted = before >= p.float()[:, None]
    drop = torch.zeros_like(drop_sorted).scatter(1, idx, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@runtime_checkable
class RowProcessor(Protocol):
    """A per-request constraint on one row's logits for its whole decode, e.g. a grammar matcher (structured
    outputs) or a list of allowed answers. The decode loop applies the processors of one class together, once per
    step (:meth:`process_batch`: one shared token bitmask for the batch, filled row by row), then tells each row's
    processor which token the row took (:meth:`accept`)."""

    def accept(self, token: int) -> bool:
        """The row took ``token``; True when the constraint is now complete (the row ends, ``finish_reason``
        ``stop``)."""

    @classmethod
    def process_batch(cls, logits: torch.Tensor, processors: Sequence[RowProcessor]) -> torch.Tensor:
        """``logits [n, V]`` of the ``n`` rows holding a processor of this class, in ``processors`` order -> their
        processed logits (a disallowed token's logit becomes ``-inf``)."""


def apply_processors(logits: torch.Tensor, processors: Sequence[RowProcessor | None]) -> torch.Tensor:
    """Each class of processor over its rows, one ``process_batch`` call per class (``logits`` is not modified)."""
    groups: dict[type, list[int]] = {}
    for j, p in enumerate(processors):
        if p is not None:
            groups.setdefault(type(p), []).append(j)
    for cls, rows in groups.items():
        idx = torch.tensor(rows, device=logits.device)
        logits = logits.index_copy(0, idx, cls.process_batch(logits[idx], [processors[j] for j in rows]))
    return logits


class RowSampling:
    """The per-row settings of a batch as tensors, with the rows' processors and the tokens each row has seen
    (prompt and answer; kept only when a row has a repetition penalty). Pruned and extended with the batch."""

    _PER_ROW = ("greedy", "temperature", "top_k", "top_p", "penalty")

    def __init__(
        self,
        params: Sequence[SamplingParams],
        device,
        vocab_size: int | None = None,
        prompt_ids: Sequence[Sequence[int]] | None = None,
        processors: Sequence[RowProcessor | None] | None = None,
    ):
        self.greedy = torch.tensor([p.greedy for p in params], dtype=torch.bool, device=device)
        self.temperature = torch.tensor([p.temperature if not p.greedy else 1.0 for p in params], device=device)
        self.top_k = torch.tensor([p.top_k for p in params], dtype=torch.long, device=device)
        self.top_p = torch.tensor([p.top_p for p in params], dtype=torch.float32, device=device)
        self.penalty = torch.tensor([p.repetition_penalty for p in params], dtype=torch.float32, device=device)
        self.generators: list[torch.Generator | None] = []
        for p in params:
            if p.greedy:
                self.generators.append(None)
                continue
            g = torch.Generator(device=device)
            g.manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
            self.generators.append(g)
        self.processors: list[RowProcessor | None] = (
            list(processors) if processors is not None else [None] * len(params)
        )
        if len(self.processors) != len(params):
            raise ValueError(f"{len(params)} prompts but {len(self.processors)} processors")
        self.seen: torch.Tensor | None = None
        if bool((self.penalty != 1.0).any()):
            if prompt_ids is None or vocab_size is None:
                raise ValueError("repetition_penalty needs the prompt ids and the vocabulary size")
            self.seen = torch.zeros(len(params), vocab_size, dtype=torch.bool, device=device)
            for b, ids in enumerate(prompt_ids):
                ids = [t for t in ids if 0 <= t < vocab_size]  # image placeholders are not tokens
                if ids:
                    self.seen[b, torch.tensor(ids, device=device)] = True
        self._refresh()

    def __len__(self) -> int:
        return len(self.generators)

    def _refresh(self):
        self.all_greedy = bool(self.greedy.all())
        self.any_penalty = bool((self.penalty != 1.0).any())
        self.any_processor = any(p is not None for p in self.processors)

    def observe(self, tokens: torch.Tensor) -> None:
        """Each row took ``tokens[row]`` (for the repetition penalty)."""
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=tokens.device), tokens] = True

    def extend(self, other: RowSampling) -> None:
        """Append the rows of ``other``."""
        for name in self._PER_ROW:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        if self.seen is not None or other.seen is not None:
            vocab = (self.seen if self.seen is not None else other.seen).shape[1]
            self.seen = torch.cat([_seen_or_zeros(self, vocab), _seen_or_zeros(other, vocab)])
        self.generators = self.generators + other.generators
        self.processors = self.processors + other.processors
        self._refresh()

    def select(self, keep: torch.Tensor) -> None:
        """Keep the rows at ``keep`` (positions), in that order."""
        for name in self._PER_ROW:
            setattr(self, name, getattr(self, name)[keep])
        if self.seen is not None:
            self.seen = self.seen[keep]
        rows = keep.tolist()
        self.generators = [self.generators[i] for i in rows]
        self.processors = [self.processors[i] for i in rows]
        self._refresh()


def _seen_or_zeros(rs: RowSampling, vocab: int) -> torch.Tensor:
    """``rs.seen``, or nothing seen for its rows (a batch without a repetition penalty)."""
    if rs.seen is not None:
        return rs.seen
    return torch.zeros(len(rs), vocab, dtype=torch.bool, device=rs.penalty.device)


def choose_tokens(logits: torch.Tensor, rs: RowSampling) -> torch.Tensor:
    """Next token id per row ``[B]``."""
    if rs.any_processor:
        logits = apply_processors(logits, rs.processors)
    if rs.any_penalty and rs.seen is not None:
        logits = apply_repetition_penalty(logits, rs.seen, rs.penalty)
    out = logits.argmax(-1)
    if rs.all_greedy:
        return out
    rows = torch.nonzero(~rs.greedy).flatten()
    lg = logits[rows].float() / rs.temperature[rows, None]
    lg = top_k_mask(lg, rs.top_k[rows])
    lg = top_p_mask(lg, rs.top_p[rows])
    probs = lg.softmax(-1)
    for j, b in enumerate(rows.tolist()):
        out[b] = torch.multinomial(probs[j], 1, generator=rs.generators[b])[0]
    return out
