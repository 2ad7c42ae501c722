"""Batch collation: right-pads token ids (pad id) and labels (-100), builds the attention mask, and flattens the
images of the batch, in sample order, into one tensor per encoder (the Model API forward kwargs,
docs/ARCHITECTURE.md). Bad samples (``{"bad": reason}`` from the dataset) are dropped and counted.

Unlike the official XLA collator (docs/official-code.md#collator) nothing is padded to a fixed 2048 and no dummy image is inserted for
text-only samples: the model splices variable-length image blocks itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from ..constants import IGNORE_INDEX


class Collator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict]) -> dict:
        bad = Counter(x["bad"] for x in items if "bad" in x)
        good = [x for x in items if "bad" not in x]
        batch: dict = {
            "bad_counts": dict(bad),
            "num_samples": len(items),
            "indices": [x["index"] for x in good],
            "empty": not good,
        }
        if not good:
            batch["input_ids"] = None
            return batch
        T = max(len(x["input_ids"]) for x in good)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            T = (T + m - 1) // m * m
        B = len(good)
        ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, x in enumerate(good):
            n = len(x["input_ids"])
            ids[b, :n] = x["input_ids"]
            labels[b, :n] = x["labels"]
            mask[b, :n] = 1
        batch.update(input_ids=ids, attention_mask=mask, labels=labels)
        batch["num_tokens"] = sum(int(x.get("num_tokens", len(x["input_ids"]))) for x in good)
        batch.update(stack_images(good))
        return batch


def stack_images(items: Sequence[dict]) -> dict:
    """``image_sizes`` (flat, in sample order; None without images) and ``pixel_values`` / ``features`` (one tensor
    per encoder, the images of all samples concatenated) of collated samples."""
    out: dict = {"image_sizes": [tuple(s) for x in items for s in x.get("image_sizes", [])] or None}
    for key in ("pixel_values", "features"):
        per = [x[key] for x in items if x.get(key) is not None]
        if per:
            out[key] = [torch.cat([p[k] for p in per]) for k in range(len(per[0]))]
    return out


MODEL_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values", "image_sizes", "features", "grounding")


def model_inputs(batch: dict, device=None) -> dict:
    """The forward kwargs of a collated batch, moved to ``device``."""
    out = {}
    for k in MODEL_KEYS:
        v = batch.get(k)
        if v is None:
            continue
        if isinstance(v, torch.Tensor):
            v = v.to(device) if device is not None else v
        elif k in ("pixel_values", "features"):
            v = [t.to(device) if device is not None else t for t in v]
        elif k == "grounding" and device is not None:
            v = v.to(device)
        out[k] = v
    return out
