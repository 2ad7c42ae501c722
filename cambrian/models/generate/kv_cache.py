"""The decoder state of an HF causal LM (:class:`KVCacheState`): its KV cache plus the left-padded attention mask and
the next position of every row, stepped one token per row; rows dropped, repeated, or merged in from another state
(continuous batching) with the cache columns that no row needs any more trimmed away."""

from __future__ import annotations

import torch

from ...utils.quiet import quiet_cache_deprecation


class KVCacheState:
    """``llm``: an HF causal LM; ``past``: the prefill's KV cache; ``attention_mask``/``position_ids``: the
    prefill's (left-padded) ``[B, L]`` mask and positions."""

    def __init__(self, llm, past, attention_mask: torch.Tensor, position_ids: torch.Tensor):
        self.llm = llm
        self.past = past
        self.attention_mask = attention_mask
        self.position = position_ids[:, -1:]

    @property
    def can_select(self) -> bool:
        """HF ``Cache.batch_select_indices``; legacy tuple caches cannot drop rows."""
        return hasattr(self.past, "batch_select_indices")

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.attention_mask = torch.cat([self.attention_mask, torch.ones_like(self.attention_mask[:, :1])], dim=1)
        self.position = self.position + 1
        with torch.no_grad(), quiet_cache_deprecation():  # the cache is passed / read as past_key_values
            out = self.llm(
                input_ids=tokens[:, None],
                attention_mask=self.attention_mask,
                position_ids=self.position,
                past_key_values=self.past,
                use_cache=True,
            )
        self.past = out.past_key_values
        return out.logits[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.attention_mask.device)
        self.past.batch_select_indices(rows)
        self.attention_mask, self.position = self.attention_mask[rows], self.position[rows]
        self._trim_left()

    def can_merge(self, other: KVCacheState | None = None) -> bool:
        if not _plain_cache(self.past):
            return False
        if other is None:
            return True
        return _plain_cache(other.past) and len(other.past.layers) == len(self.past.layers)

    def merge(self, other: KVCacheState) -> None:
        """Left-pad both caches to a common length (masked), so each row's answer is the one it would get alone."""
        L1, L2 = self.attention_mask.shape[1], other.attention_mask.shape[1]
        L = max(L1, L2)
        for mine, theirs in zip(self.past.layers, other.past.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, L - L1, -2), _left_pad(theirs.keys, L - L2, -2)])
            mine.values = torch.cat([_left_pad(mine.values, L - L1, -2), _left_pad(theirs.values, L - L2, -2)])
        self.attention_mask = torch.cat(
            [_left_pad(self.attention_mask, L - L1, 1), _left_pad(other.attention_mask, L - L2, 1)]
        )
        self.position = torch.cat([self.position, other.position])
        other.past = None

    def _trim_left(self) -> None:
        """Drop the leading cache columns that are padding for every remaining row (rows that joined and left would
        otherwise grow the cache for as long as the batch runs)."""
        if not _plain_cache(self.past) or self.attention_mask.shape[1] == 0:
            return
        used = torch.nonzero(self.attention_mask.any(0)).flatten()
        first = int(used[0]) if used.numel() else 0
        if first == 0:
            return
        for layer in self.past.layers:
            layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
        self.attention_mask = self.attention_mask[:, first:]


def _plain_cache(past) -> bool:
    """A KV cache whose layers are plain ``[B, H, L, D]`` key/value tensors (HF ``DynamicLayer``), which rows can be
    merged into and trimmed; sliding-window, quantised or offloaded caches are left alone."""
    layers = getattr(past, "layers", None)
    if not layers or getattr(past, "offloading", False):
        return False
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer and getattr(layer, "is_initialized", False) for layer in layers)


def _left_pad(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x.new_zeros(shape), x], dim=dim)
