"""The decode loop (:class:`DecodeRun`): after a model's prefill, one token per row per step until every row has
finished, as an iterator of :class:`~cambrian.models.generate.contract.GenerationEvent`.

Every row of a batch has its own :class:`~cambrian.models.generate.sampling.SamplingParams` (the server batches
requests with different settings) and, optionally, its own
:class:`~cambrian.models.generate.logits.RowProcessor`; greedy decoding (``temperature=0``, the default) is an
``argmax``, and batched greedy answers equal one-at-a-time answers.

Per step the Python work is one ``tolist()`` of the chosen tokens and a loop over the rows; rows that neither
stream nor have stop strings are only appended to (their text is decoded once at the end). Rows that finish are
dropped from the batch and the decoder state, so a long answer does not keep short ones computing. With
``step_events`` the run pauses at each step boundary, where another prefilled run may :meth:`DecodeRun.join`
(continuous batching).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .contract import FINISH_CANCELLED, FINISH_LENGTH, FINISH_STOP, GenerationEvent, Prefill
from .detok import RowText
from .logits import RowProcessor, RowSampling, choose_tokens
from .sampling import SamplingParams


class DecodeRun:
    """Iterator of :class:`GenerationEvent` over a prefilled batch.

    Args:
        prefill: the model's :class:`Prefill` (logits, decoder state, prompt ids and lengths).
        params: one :class:`SamplingParams` per row.
        tokenizer: decodes answer ids (``decode(ids, skip_special_tokens=True)``; ``pad_token_id``).
        stop_token_ids: ids that end a row (end of turn / end of text).
        stream: per row (or for all), whether to emit text deltas as they come.
        max_positions: the context length (prompt + answer) a row may reach; None for no limit.
        step_events: also yield a step-boundary event after each decode step, where another prefilled run may
            :meth:`join`.
        processors: per row, a :class:`RowProcessor` or None.

    Row ids are stable for the whole run (rows that joined get the next ids), whatever rows left the batch."""

    def __init__(
        self,
        prefill: Prefill,
        params: Sequence[SamplingParams],
        tokenizer,
        stop_token_ids: Sequence[int],
        stream: bool | Sequence[bool] = False,
        max_positions: int | None = None,
        step_events: bool = False,
        processors: Sequence[RowProcessor | None] | None = None,
    ):
        logits = prefill.logits
        B = logits.shape[0]
        if len(params) != B:
            raise ValueError(f"{B} prompts but {len(params)} sampling settings")
        streams = [bool(stream)] * B if isinstance(stream, bool) else [bool(s) for s in stream]
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(int(t) for t in stop_token_ids)
        self.params = list(params)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.state = prefill.state
        self._logits = logits
        self.prompt_tokens = list(prefill.prompt_tokens)
        self.rows = [RowText(tokenizer, p.stop, track=s or bool(p.stop)) for p, s in zip(self.params, streams)]
        self.streams = streams
        self.budget = [
            p.max_new_tokens if not max_positions else max(0, min(p.max_new_tokens, max_positions - n))
            for p, n in zip(self.params, self.prompt_tokens)
        ]
        self._rs = RowSampling(self.params, logits.device, logits.shape[-1], prefill.prompt_ids, processors)
        self._cancelled: set[int] = set()
        self._started = False
        self.step_events = step_events
        self._pending: list[tuple[int, DecodeRun]] = []  # joined runs waiting to be merged, with their first row id
        self._active: list[int] = []  # the row id at each batch position
        self._done: set[int] = set()  # finished rows still holding a batch position (a state that cannot drop rows)

    def cancel(self, row: int) -> None:
        """Stop generating for ``row`` (its final event says ``cancelled``); thread-safe."""
        self._cancelled.add(row)

    def _finish(self, b: int, reason: str) -> GenerationEvent:
        self._done.add(b)
        text, rest = self.rows[b].final()
        return GenerationEvent(
            b,
            delta=rest if self.streams[b] else "",
            finish_reason=reason,
            text=text,
            prompt_tokens=self.prompt_tokens[b],
            completion_tokens=len(self.rows[b].ids),
        )

    def _finish_full(self, rows: Sequence[int]) -> Iterator[GenerationEvent]:
        """Rows whose prompt already fills the context end before their first token."""
        for b in rows:
            if self.budget[b] == 0:
                yield self._finish(b, FINISH_LENGTH)

    def _advance(self, j: int, b: int, token: int) -> GenerationEvent | None:
        """Row ``b`` (at batch position ``j``) took ``token``: its final event, a text delta, or nothing."""
        row = self.rows[b]
        if b in self._cancelled:
            return self._finish(b, FINISH_CANCELLED)
        if token in self.stop_ids:
            return self._finish(b, FINISH_STOP)
        proc = self._rs.processors[j]
        if row.push(token) or (proc is not None and proc.accept(token)):
            return self._finish(b, FINISH_STOP)
        if len(row.ids) >= self.budget[b]:
            return self._finish(b, FINISH_LENGTH)
        if self.streams[b]:
            d = row.delta()
            if d:
                return GenerationEvent(b, delta=d, prompt_tokens=self.prompt_tokens[b], completion_tokens=len(row.ids))
        return None

    def __iter__(self) -> Iterator[GenerationEvent]:
        if self._started:
            raise RuntimeError("a DecodeRun can be iterated once")
        self._started = True
        self._active = list(range(len(self.params)))
        yield from self._finish_full(self._active)
        logits, self._logits = self._keep_rows(self._logits), None
        while len(self._done) < len(self._active):
            with torch.no_grad():
                toks = choose_tokens(logits, self._rs)
            self._rs.observe(toks)
            for j, (b, t) in enumerate(zip(self._active, toks.tolist())):
                if b not in self._done:
                    ev = self._advance(j, b, t)
                    if ev is not None:
                        yield ev
            if len(self._done) == len(self._active):
                break
            if self._done and not self.state.can_select:  # finished rows stay and decode padding
                toks = toks.masked_fill(
                    torch.tensor([b in self._done for b in self._active], device=toks.device), self.pad
                )
            logits = self.state.step(self._keep_rows(toks))
            if self.step_events:
                yield GenerationEvent(-1)
                if self._pending:
                    first = len(self._active)
                    logits = self._merge(logits)
                    yield from self._finish_full(self._active[first:])
                    logits = self._keep_rows(logits)
        self.state = None

    def _keep_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the finished rows from the batch (decoder state, sampling state) and return the rows of ``x`` (a
        per-row tensor) that stay; nothing changes when the state cannot drop rows."""
        keep = [j for j, b in enumerate(self._active) if b not in self._done]
        if len(keep) == len(self._active) or not keep or not self.state.can_select:
            return x
        idx = torch.tensor(keep, dtype=torch.long, device=x.device)
        self.state.select(idx)
        self._rs.select(idx)
        self._active, self._done = [self._active[j] for j in keep], set()
        return x[idx]

    # -- continuous batching ------------------------------------------------------------------------------------
    def joinable(self) -> bool:
        """Whether prefilled runs can join this one (its decoder state can merge rows)."""
        return self.step_events and self.state is not None and self.state.can_merge()

    def join(self, other: DecodeRun) -> list[int]:
        """Add the rows of ``other`` (prefilled, not iterated) to this run at the current step boundary; returns
        their row ids here; each row's answer is the one it would get alone. Call only while this run is suspended
        at a step-boundary event."""
        if other._started:
            raise RuntimeError("join: the other run has already started")
        if not (self.joinable() and self.state.can_merge(other.state)):
            raise RuntimeError("join: these decoder states cannot be merged")
        base = len(self.params)
        self.params += other.params
        self.rows += other.rows
        self.streams += other.streams
        self.budget += other.budget
        self.prompt_tokens += other.prompt_tokens
        self._pending.append((base, other))
        other._started = True
        return list(range(base, base + len(other.params)))

    def _merge(self, logits: torch.Tensor) -> torch.Tensor:
        """Merge the joined runs into the batch; returns the logits with their rows appended."""
        for base, other in self._pending:
            self.state.merge(other.state)
            logits = torch.cat([logits, other._logits.to(logits.dtype)])
            self._rs.extend(other._rs)
            self._active += range(base, base + len(other.params))
            other.state = other._logits = None
        self._pending = []
        return logits
