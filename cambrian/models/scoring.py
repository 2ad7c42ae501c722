"""Log-likelihood of candidate continuations: the scoring behind option-likelihood answering.

``score_continuations(model, prompts, images, continuations)`` returns, for every prompt and every candidate answer
text, the log-probability the model gives that text as its reply (summed over the text's tokens, and their mean).
Picking the most likely candidate is how lm-evaluation-harness answers multiple-choice tasks and how V*'s
evaluation picks an option; it separates "the model does not know" from "the model knows but cannot put the answer
in the requested format" (an option letter, say).

It needs only the ``VLM`` contract (``cambrian.models.vlm``): ``tokenize_conversation`` (the model's own chat
template, so the scored tokens are exactly the ones generation would emit after the prompt), ``forward`` without
labels returning ``.logits`` ``[B, T, V]`` over the spliced sequence (right padding), ``encoders`` (their
``preprocess``) and ``visual_token_count``. Each candidate is the assistant turn's content; by default its
end-of-turn tokens are not scored (``include_end=True`` scores them too, i.e. "this text and nothing more").

Work is shared: candidates that need the same input (every one-token candidate of a prompt needs only the prompt)
run as one row, so scoring the letters A-D costs one forward pass, like reading the next-token logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX


@dataclass(frozen=True)
class ContinuationScore:
    """``logprob``: summed log-probability (nats, <= 0) of the candidate's tokens; ``tokens``: how many."""

    logprob: float
    tokens: int

    @property
    def mean(self) -> float:
        """Per-token mean log-probability (length-normalised)."""
        return self.logprob / max(1, self.tokens)


def _messages(prompt, answer: str, system: str | None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return head + turns + [{"role": "assistant", "content": answer}]


def _last_reply(labels: Sequence[int]) -> tuple[int, int]:
    """[start, end) of the last run of supervised positions (the final assistant turn)."""
    end = max(i for i, v in enumerate(labels) if v != IGNORE_INDEX) + 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return start, end


def _targets(model, prompt, answer: str, system: str | None, end_tokens: int, include_end: bool):
    """(ids of the input needed, [(text index, token id)] scored) for one candidate."""
    tok = model.tokenize_conversation(_messages(prompt, answer, system))
    ids, labels = list(tok["input_ids"]), list(tok["labels"])
    start, end = _last_reply(labels)
    stop = end if include_end else end - end_tokens
    if stop <= start:
        raise ValueError(f"candidate {answer!r} has no tokens to score")
    scored = [(t, ids[t]) for t in range(start, stop)]
    return ids[: stop - 1], scored


def _end_tokens(model, prompt, system: str | None) -> int:
    """How many supervised tokens the template adds after an empty reply (its end-of-turn)."""
    labels = list(model.tokenize_conversation(_messages(prompt, "", system))["labels"])
    if all(v == IGNORE_INDEX for v in labels):
        return 0
    start, end = _last_reply(labels)
    return end - start


def _device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def score_continuations(
    model,
    prompts: Sequence,
    images: Sequence[Sequence] | None,
    continuations: Sequence[Sequence[str]],
    *,
    system: str | None = None,
    include_end: bool = False,
    batch_size: int = 8,
) -> list[list[ContinuationScore]]:
    """``prompts[i]``: a user turn (``"<image>\\n..."``, one ``<image>`` per image in ``images[i]``) or a
    conversation ending with a user turn; ``continuations[i]``: the candidate replies. Returns
    ``scores[i][j]`` for candidate ``j`` of prompt ``i``. ``images``: PIL images per prompt (None / [] = none)."""
    if len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} candidate lists")
    images = [list(x) for x in (images if images is not None else [[] for _ in prompts])]
    if len(images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists")
    # rows: (prompt index, input ids) -> [(candidate (i, j), [(text index, token)])]
    rows: dict[tuple, list] = {}
    for i, (prompt, cands) in enumerate(zip(prompts, continuations)):
        if not cands:
            raise ValueError(f"prompt {i} has no candidate continuations")
        n_end = 0 if include_end else _end_tokens(model, prompt, system)
        for j, cand in enumerate(cands):
            ids, scored = _targets(model, prompt, str(cand), system, n_end, include_end)
            n_tags = sum(1 for t in ids if t == IMAGE_TOKEN_INDEX)
            if n_tags != len(images[i]):
                raise ValueError(f"prompt {i} has {n_tags} image placeholders but {len(images[i])} images")
            rows.setdefault((i, tuple(ids)), []).append(((i, j), scored))
    out = [[None] * len(c) for c in continuations]
    keys = sorted(rows, key=lambda k: len(k[1]))  # similar lengths share a batch
    device = _device(model)
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    for s in range(0, len(keys), max(1, batch_size)):
        batch = keys[s : s + batch_size]
        T = max(len(ids) for _, ids in batch)
        input_ids = torch.full((len(batch), T), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        flat, shifts = [], []
        for b, (i, ids) in enumerate(batch):
            input_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[b, : len(ids)] = 1
            # where text index t lands in the spliced row: every image before it adds (its tokens - 1) positions
            row_shift, k, extra = [], 0, 0
            for tid in ids:
                row_shift.append(extra)
                if tid == IMAGE_TOKEN_INDEX:
                    extra += int(model.visual_token_count(images[i][k].size)) - 1
                    k += 1
            shifts.append(row_shift)
            flat += images[i]
        kwargs = {}
        if flat:
            pil = [im.convert("RGB") for im in flat]
            kwargs = {
                "pixel_values": [enc.preprocess(pil) for enc in model.encoders],
                "image_sizes": [im.size for im in pil],
            }
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs).logits
        for b, (i, ids) in enumerate(batch):
            for (ci, cj), scored in rows[(i, ids)]:
                # the token at text index t is predicted at the spliced position of text index t - 1
                pos = torch.tensor([t - 1 + shifts[b][t - 1] for t, _ in scored])
                logp = torch.log_softmax(logits[b, pos.to(logits.device)].float(), dim=-1)
                tgt = torch.tensor([tid for _, tid in scored], device=logp.device)
                total = float(logp.gather(1, tgt[:, None]).sum())
                out[ci][cj] = ContinuationScore(total, len(scored))
    return out


def best(scores: Sequence[ContinuationScore], normalize: bool = False) -> int:
    """Index of the most likely candidate (summed log-probability, or the per-token mean with ``normalize``);
    ties go to the first."""
    vals = [s.mean if normalize else s.logprob for s in scores]
    return max(range(len(vals)), key=lambda k: (vals[k], -k))
