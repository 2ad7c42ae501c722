"""Learning-rate schedules, as in HF transformers: linear warmup, then cosine to 0 / linear to 0 / constant."""

from __future__ import annotations

import math


def lr_lambda(total: int, warmup: int, kind: str):
    """HF-equivalent schedules: linear warmup, then cosine to 0 / linear to 0 / constant."""

    def f(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant":
            return 1.0
        progress = float(step - warmup) / float(max(1, total - warmup))
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return f
