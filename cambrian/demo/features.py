"""Frozen-tower features, computed once.

- training images go through the trainer's :meth:`~cambrian.train.features.FeatureCache.build` once (one batched
  pass with a progress bar), so ``feature_cache`` finds them all and the towers never run during training.
- :class:`EvalFeatureMemo`: a feature provider (``with model.features_from(memo):``) so that evaluation runs each
  tower once per *distinct* image (CV-Bench rows of one scene and the ~10 easy-VQA questions of one image share their pixels);
  keyed by a hash of the preprocessed pixels, so it is exact.

On CPU the EfficientNet tower is put in channels-last memory format (depthwise convolutions run about twice as fast;
same numbers up to float rounding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def speed_up_towers(model) -> None:
    if model.device.type != "cpu":
        return
    for enc in model.encoders:
        if any(isinstance(m, torch.nn.Conv2d) for m in enc.modules()):
            enc.to(memory_format=torch.channels_last)


def _key(pixels: Sequence[torch.Tensor], j: int) -> str:
    h = hashlib.sha1()
    for px in pixels:
        h.update(px[j].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class EvalFeatureMemo:
    """A feature provider for ``CambrianModel.features_from``: each distinct image (by a hash of its preprocessed
    pixels, so it is exact) goes through the towers once; ``stats`` counts hits and misses."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self.memo: dict[str, list[torch.Tensor]] = {}
        self.stats = {"hits": 0, "misses": 0}

    def __call__(self, pixel_values, compute):
        n = pixel_values[0].shape[0]
        keys = [_key(pixel_values, j) for j in range(n)]
        first: dict[str, int] = {}
        for j, k in enumerate(keys):  # one tower pass per distinct image, within the batch too
            if k not in self.memo:
                first.setdefault(k, j)
        missing = list(first.values())
        self.stats["hits"] += n - len(missing)
        self.stats["misses"] += len(missing)
        fresh: dict[str, list[torch.Tensor]] = {}
        if missing:
            idx = torch.tensor(missing)
            feats = compute([px[idx] for px in pixel_values])
            for i, j in enumerate(missing):
                fresh[keys[j]] = [f[i] for f in feats]
                if len(self.memo) < self.max_items:  # full: computed without storing
                    self.memo[keys[j]] = fresh[keys[j]]
        return [torch.stack([(fresh.get(k) or self.memo[k])[e] for k in keys]) for e in range(len(pixel_values))]
