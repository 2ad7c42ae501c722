"""Option likelihood: how probable each candidate answer is after a prompt (multiple choice by the lowest option loss,
as V* and lm-eval do), without generating. Each prompt is prefilled once; its decoder state is forked into one row
per option (``DecoderState.select`` with repeated rows) and the options' tokens are fed in lockstep, so the prompt's
KV cache is reused across its options."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .contract import Prefill


@torch.no_grad()
def option_logprobs(prefill: Prefill, options: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
    """``options[b]``: token ids of each candidate answer of prompt ``b`` (non-empty). Returns, per prompt and option,
    the sum of the option tokens' log-probabilities given the prompt (the answer's first token after the generation
    prompt, then each next one given the ones before)."""
    if len(options) != prefill.logits.shape[0]:
        raise ValueError(f"{prefill.logits.shape[0]} prompts but {len(options)} option lists")
    fork = [b for b, opts in enumerate(options) for _ in opts]
    seqs = [list(o) for opts in options for o in opts]
    if not seqs:
        return [[] for _ in options]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("an option has no tokens")
    lengths = torch.tensor([len(s) for s in seqs])
    longest = int(lengths.max())
    device = prefill.logits.device
    logp = prefill.logits.float().log_softmax(-1)[torch.tensor(fork, device=device)]
    if longest > 1:
        if prefill.state is None:
            raise ValueError("options longer than one token need a prefill with a decoder state (use_cache=True)")
        prefill.state.select(torch.tensor(fork, device=device))
    total = torch.zeros(len(seqs), device=device)
    rows = torch.arange(len(seqs), device=device)
    for t in range(longest):
        tok = torch.tensor([s[t] if t < len(s) else s[-1] for s in seqs], device=device)
        total += torch.where(lengths.to(device) > t, logp[rows, tok], torch.zeros_like(total))
        if t + 1 < longest:
            logp = prefill.state.step(tok).float().log_softmax(-1)
    scores = total.tolist()
    out, k = [], 0
    for opts in options:
        out.append(scores[k : k + len(opts)])
        k += len(opts)
    return out
