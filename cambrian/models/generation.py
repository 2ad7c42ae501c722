"""Decoding after the prefill: sampling, stop conditions, incremental detokenisation and streaming.

``CambrianModel`` runs the prefill (images, splice, in-LLM aggregation) and hands the last-position logits and the
KV cache to :class:`DecodeRun`, which feeds one token per row per step through the LLM and yields
:class:`GenerationEvent`\\ s. Every row of a batch has its own :class:`SamplingParams` (the server batches
requests with different settings); greedy decoding (``temperature=0``, the default) is an ``argmax`` and batched
greedy answers equal one-at-a-time answers.

Order of the logit processing for a sampled row (as in HF ``generate`` and vLLM): repetition penalty, temperature,
top-k, top-p, then one draw from the row's own ``torch.Generator`` (seeded from ``seed``, so a seed reproduces an
answer whatever else is in the batch).

Constrained decoding (``SamplingParams.structured``: a JSON schema, a regex, a grammar, choices) plugs in through one
seam: each constrained row has a :class:`RowConstraint` (``cambrian.models.constrained`` makes them); before the
tokens are chosen every constrained row writes the tokens it allows into its row of the batch's one shared bitmask,
which masks the logits (:func:`apply_token_bitmask`), and afterwards it accepts its chosen token.

Per step the Python work is one ``tolist()`` of the chosen tokens and a loop over the rows; rows that neither
stream nor have stop strings are only appended to (their text is decoded once at the end). Rows that finish are
dropped from the batch and the KV cache (``batch_select_indices``), so a long answer does not keep short ones
computing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from .constrained import StructuredOutput

FINISH_STOP = "stop"  # end-of-turn token or a stop string
FINISH_LENGTH = "length"  # max_new_tokens or the model's context length reached
FINISH_CANCELLED = "cancelled"  # DecodeRun.cancel(row) (a client went away)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. ``temperature=0`` is greedy (the evaluation default); ``top_k=0`` and
    ``top_p=1`` switch those filters off; ``repetition_penalty=1`` is off (>1 discourages tokens already in the
    prompt or the answer: a positive logit is divided by it, a negative one multiplied); ``seed`` makes sampling
    reproducible; generation stops before the first occurrence of any ``stop`` string (not included in the text);
    ``structured`` restricts the answer to a JSON schema, regex, grammar or choice list
    (:class:`~cambrian.models.constrained.StructuredOutput`)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    structured: StructuredOutput | None = None

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
        _check(
            self.structured is None or hasattr(self.structured, "kind"),
            "structured",
            self.structured,
            "a StructuredOutput (cambrian.models.constrained) or None",
        )

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


# ---- logit processing (each row its own setting) ----------------------------------------------------------


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


_BITS = torch.arange(32, dtype=torch.int32)


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Set to -inf, in ``logits [B, V]``, the tokens row ``rows[i]`` may not take: ``bitmask [>= len(rows), W]``
    int32, bit ``j`` of word ``w`` of its row ``i`` allows token ``32 w + j`` (xgrammar's layout, W = ceil(V / 32))."""
    V = logits.shape[-1]
    idx = torch.tensor(list(rows), dtype=torch.long, device=logits.device)
    words = bitmask[: len(rows)].to(logits.device)
    allowed = ((words[:, :, None] >> _BITS.to(logits.device)) & 1).bool().reshape(len(rows), -1)[:, :V]
    logits[idx] = logits[idx].masked_fill(~allowed, float("-inf"))
    return logits


class RowConstraint(Protocol):
    """One row's constrained-decoding state (``cambrian.models.constrained.GrammarRow``)."""

    def fill_bitmask(self, bitmask: torch.Tensor, index: int) -> None:
        """Write the tokens allowed next into row ``index`` of the shared bitmask (see :func:`apply_token_bitmask`)."""

    def accept(self, token: int) -> bool:
        """Advance by the chosen token; False when it was not allowed."""

    def is_terminated(self) -> bool:
        """The grammar is complete and its end accepted: the row ends."""


class _Constraints:
    """The run's :class:`RowConstraint` per row id (None: unconstrained) and the one bitmask all rows share."""

    def __init__(self, rows: Sequence[RowConstraint | None], words: int):
        self.rows = list(rows)
        self.words = words  # ceil(V / 32)
        self.bitmask = torch.empty(0, self.words, dtype=torch.int32)

    def extend(self, rows: Sequence[RowConstraint | None]) -> None:
        self.rows += rows

    def mask(self, logits: torch.Tensor, active: list[int], done: set[int]) -> torch.Tensor:
        """Mask the logits of the active, unfinished constrained rows (batch positions in ``active`` order)."""
        pos = [j for j, b in enumerate(active) if self.rows[b] is not None and b not in done]
        if not pos:
            return logits
        if self.bitmask.shape[0] < len(pos):
            self.bitmask = torch.empty(len(active), self.words, dtype=torch.int32)
        for i, j in enumerate(pos):
            self.rows[active[j]].fill_bitmask(self.bitmask, i)
        return apply_token_bitmask(logits, self.bitmask, pos)

    def accept(self, b: int, token: int) -> bool:
        """Row ``b`` took ``token``; True when its grammar has now ended (the row finishes)."""
        c = self.rows[b]
        if c is None:
            return False
        if not c.accept(token):  # the mask makes this impossible unless the logits were NaN
            raise RuntimeError(f"constrained decoding: row {b} chose token {token}, which its grammar does not allow")
        return c.is_terminated()


class _RowSampling:
    """The per-row settings of a batch as tensors, pruned with the batch."""

    def __init__(self, params: Sequence[SamplingParams], device):
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
        self._refresh()

    def _refresh(self):
        self.all_greedy = bool(self.greedy.all())
        self.any_penalty = bool((self.penalty != 1.0).any())

    def extend(self, other: _RowSampling) -> None:
        self.greedy = torch.cat([self.greedy, other.greedy])
        self.temperature = torch.cat([self.temperature, other.temperature])
        self.top_k, self.top_p = torch.cat([self.top_k, other.top_k]), torch.cat([self.top_p, other.top_p])
        self.penalty = torch.cat([self.penalty, other.penalty])
        self.generators = self.generators + other.generators
        self._refresh()

    def select(self, keep: torch.Tensor, keep_list: list[int]) -> None:
        self.greedy, self.temperature = self.greedy[keep], self.temperature[keep]
        self.top_k, self.top_p, self.penalty = self.top_k[keep], self.top_p[keep], self.penalty[keep]
        self.generators = [self.generators[i] for i in keep_list]
        self._refresh()


def choose_tokens(logits: torch.Tensor, rs: _RowSampling, seen: torch.Tensor | None) -> torch.Tensor:
    """Next token id per row ``[B]``."""
    if rs.any_penalty and seen is not None:
        logits = apply_repetition_penalty(logits, seen, rs.penalty)
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


# ---- text of one row --------------------------------------------------------------------------------------


def cut_at_stop(text: str, stop: Sequence[str], start: int = 0) -> int | None:
    """Index of the first occurrence (at or after ``start``) of any stop string, or None."""
    best = None
    for s in stop:
        k = text.find(s, start)
        if k != -1 and (best is None or k < best):
            best = k
    return best


class RowText:
    """Incremental detokenisation of one answer: each new token decodes only a short window (the tokens since the
    last emitted text, plus the ones before as context), so a step costs the same at token 5 and token 500. Text that
    ends in an incomplete UTF-8 sequence (``\\ufffd``) waits for the next token. Stop strings are searched in the
    new text only. For streaming, :meth:`delta` releases text that can no longer change: not the leading
    whitespace, not trailing whitespace (the final answer is stripped) and not a tail that could be the start of a
    stop string; the deltas of a row add up to its final text."""

    def __init__(self, tokenizer, stop: Sequence[str] = (), track: bool = True):
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self._max_stop = max((len(s) for s in self.stop), default=0)
        self.track = track
        self.ids: list[int] = []
        self.text = ""
        self.sent = ""
        self.stopped = False
        self._prefix = 0  # token offsets of the decode window: [prefix, read) is already in self.text
        self._read = 0
        self._prefix_text = ""
        self._lead: int | None = None  # index of the first non-whitespace character of self.text

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def push(self, token: int) -> bool:
        """Append a token; True when a stop string is now complete (the text is cut before it)."""
        self.ids.append(token)
        if not self.track:
            return False
        new = self._decode(self.ids[self._prefix :])
        if len(new) <= len(self._prefix_text) or new.endswith("\ufffd"):
            return False
        before = len(self.text)
        self.text += new[len(self._prefix_text) :]
        self._prefix, self._read = self._read, len(self.ids)
        self._prefix_text = self._decode(self.ids[self._prefix : self._read])
        if self.stop:
            k = cut_at_stop(self.text, self.stop, max(0, before - self._max_stop + 1))
            if k is not None:
                self.text = self.text[:k]
                self.stopped = True
                return True
        return False

    def _stop_holdback(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:n]):
                    best = n
                    break
        return best

    def delta(self) -> str:
        """New streamable text since the last call."""
        text = self.text
        if self._lead is None:
            stripped = text.lstrip()
            if not stripped:
                return ""
            self._lead = len(text) - len(stripped)
        end = len(text) - (self._stop_holdback() if not self.stopped else 0)
        while end > self._lead and text[end - 1].isspace():
            end -= 1
        start = self._lead + len(self.sent)
        if end <= start:
            return ""
        d = text[start:end]
        self.sent += d
        return d

    def final(self) -> tuple[str, str]:
        """(final text, the rest of it not streamed yet). The final text comes from one decode of all ids: cut at
        the first stop string, stripped (what ``generate_text`` returns)."""
        full = self._decode(self.ids)
        k = cut_at_stop(full, self.stop)
        text = (full if k is None else full[:k]).strip()
        rest = text[len(self.sent) :] if text.startswith(self.sent) else ""
        return text, rest


# ---- the decode loop --------------------------------------------------------------------------------------


@dataclass
class GenerationEvent:
    """One row's progress: a text ``delta`` (streaming rows), or its end (``finish_reason`` set; ``text`` is the
    whole answer and ``delta`` its not yet streamed rest). Token counts: prompt positions (images included) and
    generated tokens (stop token excluded)."""

    row: int
    delta: str = ""
    finish_reason: str | None = None
    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def step(self) -> bool:
        """A step boundary (``row == -1``, only with ``step_events=True``): rows may :meth:`DecodeRun.join` now."""
        return self.row < 0


class DecodeRun:
    """Iterator of :class:`GenerationEvent` over a prefilled batch. ``llm``: HF causal LM (called with one token
    per row and the KV cache); ``logits [B, V]``/``past``/``attention_mask``/``position_ids``: the prefill's
    (left-padded) output; ``stream``: per row, whether to emit deltas; ``prompt_ids``: per row, the prompt's token
    ids (needed only for the repetition penalty); ``max_positions``: the context length (prompt + answer) a row may
    reach; ``step_context``: a context manager factory wrapped around each LLM call; ``step_events``: also yield a
    step-boundary event after each decode step, where another prefilled run may :meth:`join` (continuous batching);
    ``constraints``: per row, a :class:`RowConstraint` or None (rows whose ``SamplingParams.structured`` is set).

    Row ids are stable for the whole run (rows that joined get the next ids), whatever rows left the batch."""

    def __init__(
        self,
        llm,
        tokenizer,
        stop_token_ids: Sequence[int],
        logits: torch.Tensor,
        past,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        params: Sequence[SamplingParams],
        stream: bool | Sequence[bool] = False,
        prompt_ids: Sequence[Sequence[int]] | None = None,
        max_positions: int | None = None,
        pad_token_id: int = 0,
        step_context: Callable[[], contextlib.AbstractContextManager] | None = None,
        step_events: bool = False,
        constraints: Sequence[RowConstraint | None] | None = None,
    ):
        B = logits.shape[0]
        if len(params) != B:
            raise ValueError(f"{B} prompts but {len(params)} sampling settings")
        streams = [bool(stream)] * B if isinstance(stream, bool) else [bool(s) for s in stream]
        self.llm, self.tokenizer = llm, tokenizer
        self.stop_ids = frozenset(int(t) for t in stop_token_ids)
        self.params = list(params)
        self.pad = pad_token_id
        self._step_context = step_context or contextlib.nullcontext
        self._logits, self._past = logits, past
        self._attn = attention_mask
        self._pos = position_ids[:, -1:]
        self.prompt_tokens = [int(n) for n in attention_mask.sum(-1).tolist()]
        self.rows = [RowText(tokenizer, p.stop, track=s or bool(p.stop)) for p, s in zip(self.params, streams)]
        self.streams = streams
        self.budget = [
            p.max_new_tokens if max_positions is None else max(0, min(p.max_new_tokens, max_positions - n))
            for p, n in zip(self.params, self.prompt_tokens)
        ]
        self._rs = _RowSampling(self.params, logits.device)
        self._seen = None
        if self._rs.any_penalty:
            if prompt_ids is None:
                raise ValueError("repetition_penalty needs the prompt ids")
            self._seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
            for b, ids in enumerate(prompt_ids):
                ids = [t for t in ids if 0 <= t < logits.shape[-1]]  # image placeholders are not tokens
                if ids:
                    self._seen[b, torch.tensor(ids, device=logits.device)] = True
        self._cancelled: set[int] = set()
        self._started = False
        self.step_events = step_events
        self._pending: list[tuple[int, DecodeRun]] = []  # joined runs waiting to be merged, with their first row id
        if constraints is not None and len(constraints) != B:
            raise ValueError(f"{B} prompts but {len(constraints)} constraints")
        self._cons = _Constraints(constraints, (logits.shape[-1] + 31) // 32) if constraints is not None else None

    def cancel(self, row: int) -> None:
        """Stop generating for ``row`` (its final event says ``cancelled``); thread-safe."""
        self._cancelled.add(row)

    def _finish(self, b: int, reason: str) -> GenerationEvent:
        text, rest = self.rows[b].final()
        return GenerationEvent(
            b,
            delta=rest if self.streams[b] else "",
            finish_reason=reason,
            text=text,
            prompt_tokens=self.prompt_tokens[b],
            completion_tokens=len(self.rows[b].ids),
        )

    def __iter__(self) -> Iterator[GenerationEvent]:
        if self._started:
            raise RuntimeError("a DecodeRun can be iterated once")
        self._started = True
        active = list(range(len(self.params)))  # original row at each batch position
        done: set[int] = set()  # finished rows still holding a batch position (cache that cannot drop rows)
        for b in active:  # a prompt that already fills the context
            if self.budget[b] == 0:
                done.add(b)
                yield self._finish(b, FINISH_LENGTH)
        active, done = self._drop(active, done)
        logits, self._logits = self._logits, None
        while len(done) < len(active):
            with torch.no_grad():
                if self._cons is not None:
                    logits = self._cons.mask(logits, active, done)
                toks = choose_tokens(logits, self._rs, self._seen)
            if self._seen is not None:
                self._seen[torch.arange(len(active), device=toks.device), toks] = True
            for b, t in zip(active, toks.tolist()):
                if b in done:
                    continue
                row = self.rows[b]
                ended = self._cons is not None and self._cons.accept(b, t)
                if b in self._cancelled:
                    done.add(b)
                    yield self._finish(b, FINISH_CANCELLED)
                elif ended or t in self.stop_ids or row.push(t):
                    done.add(b)
                    yield self._finish(b, FINISH_STOP)
                elif len(row.ids) >= self.budget[b]:
                    done.add(b)
                    yield self._finish(b, FINISH_LENGTH)
                elif self.streams[b]:
                    d = row.delta()
                    if d:
                        yield GenerationEvent(
                            b, delta=d, prompt_tokens=self.prompt_tokens[b], completion_tokens=len(row.ids)
                        )
            if len(done) == len(active):
                break
            if done:
                before = active
                active, done = self._drop(active, done)
                if len(active) < len(before):
                    toks = toks[torch.tensor([before.index(b) for b in active], device=toks.device)]
                else:
                    toks = toks.masked_fill(torch.tensor([b in done for b in active], device=toks.device), self.pad)
            self._attn = torch.cat([self._attn, torch.ones_like(self._attn[:, :1])], dim=1)
            self._pos = self._pos + 1
            with torch.no_grad(), self._step_context():
                out = self.llm(
                    input_ids=toks[:, None],
                    attention_mask=self._attn,
                    position_ids=self._pos,
                    past_key_values=self._past,
                    use_cache=True,
                )
            self._past = out.past_key_values
            logits = out.logits[:, -1]
            if self.step_events:
                yield GenerationEvent(-1)
                if self._pending:
                    active, logits = self._merge(active, logits)
                    for b in active:  # a joined prompt that already fills the context
                        if self.budget[b] == 0:
                            done.add(b)
                            yield self._finish(b, FINISH_LENGTH)
                    if done:
                        keep = [j for j, b in enumerate(active) if b not in done]
                        active, done = self._drop(active, done)
                        logits = logits[torch.tensor(keep, device=logits.device)]
        self._past = None

    # -- continuous batching ------------------------------------------------------------------------------------
    def joinable(self) -> bool:
        """Whether prefilled runs can join this one (its KV cache is plain per-layer key/value tensors)."""
        return self.step_events and _plain_cache(self._past)

    def join(self, other: DecodeRun) -> list[int]:
        """Add the rows of ``other`` (prefilled, not iterated) to this run at the current step boundary; returns
        their row ids here. Their KV caches are left-padded to a common length (masked), so each row's answer is
        the one it would get alone. Call only while this run is suspended at a step-boundary event."""
        if other._started:
            raise RuntimeError("join: the other run has already started")
        if not (self.joinable() and _plain_cache(other._past)) or len(other._past.layers) != len(self._past.layers):
            raise RuntimeError("join: these KV caches cannot be merged")
        base = len(self.params)
        n = len(other.params)
        self.params += other.params
        self.rows += other.rows
        self.streams += other.streams
        self.budget += other.budget
        self.prompt_tokens += other.prompt_tokens
        if self._cons is None and other._cons is not None:
            self._cons = _Constraints([None] * base, other._cons.words)
        if self._cons is not None:
            self._cons.extend(other._cons.rows if other._cons is not None else [None] * n)
        self._pending.append((base, other))
        other._started = True
        return list(range(base, base + n))

    def _merge(self, active: list[int], logits: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        for base, other in self._pending:
            n = len(other.params)
            L1, L2 = self._attn.shape[1], other._attn.shape[1]
            L = max(L1, L2)
            for mine, theirs in zip(self._past.layers, other._past.layers):
                mine.keys = torch.cat([_left_pad(mine.keys, L - L1, -2), _left_pad(theirs.keys, L - L2, -2)])
                mine.values = torch.cat([_left_pad(mine.values, L - L1, -2), _left_pad(theirs.values, L - L2, -2)])
            self._attn = torch.cat([_left_pad(self._attn, L - L1, 1), _left_pad(other._attn, L - L2, 1)])
            self._pos = torch.cat([self._pos, other._pos])
            logits = torch.cat([logits, other._logits.to(logits.dtype)])
            self._rs.extend(other._rs)
            if self._seen is not None or other._seen is not None:
                mine = (
                    self._seen
                    if self._seen is not None
                    else torch.zeros(len(active), logits.shape[-1], dtype=torch.bool, device=logits.device)
                )
                theirs = (
                    other._seen
                    if other._seen is not None
                    else torch.zeros(n, logits.shape[-1], dtype=torch.bool, device=logits.device)
                )
                self._seen = torch.cat([mine, theirs])
            active = active + list(range(base, base + n))
            other._past = other._logits = None
        self._pending = []
        return active, logits

    def _drop(self, active: list[int], done: set[int]) -> tuple[list[int], set[int]]:
        """Remove finished rows from the batch (KV cache, mask, positions, sampling state). Returns the new
        ``(active, done)``; unchanged when the cache cannot drop rows (they then decode padding)."""
        if not done:
            return active, done
        keep = [j for j, b in enumerate(active) if b not in done]
        if not keep:
            return active, done
        if self._past is not None and not cache_drops_rows(self._past):
            return active, done
        idx = torch.tensor(keep, dtype=torch.long, device=self._attn.device)
        if self._past is not None:
            self._past.batch_select_indices(idx)
        self._attn, self._pos = self._attn[idx], self._pos[idx]
        if self._logits is not None:  # before the first step: the prefill's logits
            self._logits = self._logits[idx]
        self._rs.select(idx, keep)
        if self._seen is not None:
            self._seen = self._seen[idx]
        self._trim_left()
        return [active[j] for j in keep], set()

    def _trim_left(self) -> None:
        """Drop the leading cache columns that are padding for every remaining row (rows that joined and left would
        otherwise grow the cache for as long as the batch runs)."""
        if not _plain_cache(self._past) or self._attn.shape[1] == 0:
            return
        used = torch.nonzero(self._attn.any(0)).flatten()
        first = int(used[0]) if used.numel() else 0
        if first == 0:
            return
        for layer in self._past.layers:
            layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
        self._attn = self._attn[:, first:]


def _plain_cache(past) -> bool:
    """A KV cache whose layers are plain ``[B, H, L, D]`` key/value tensors (HF ``DynamicLayer``), which rows can be
    merged into and trimmed; sliding-window, quantised or offloaded caches are left alone."""
    layers = getattr(past, "layers", None)
    if not layers or getattr(past, "offloading", False):
        return False
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover
        return False
    return all(type(layer) is DynamicLayer and getattr(layer, "is_initialized", False) for layer in layers)


def _left_pad(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def cache_drops_rows(past) -> bool:
    """Whether a KV cache can drop batch rows (HF ``Cache.batch_select_indices``; legacy tuples cannot)."""
    return hasattr(past, "batch_select_indices")


def collect_texts(run: DecodeRun | Iterator[GenerationEvent], n: int) -> list[str]:
    """Final texts of a run, in row order."""
    out: list[str | None] = [None] * n
    for ev in run:
        if ev.finished:
            out[ev.row] = ev.text
    return [o if o is not None else "" for o in out]
