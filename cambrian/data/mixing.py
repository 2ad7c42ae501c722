"""Data mixing (docs/official-code.md#data-mix "Data"): cap every source at ``t`` samples (data balancing; ``t = 350k`` in the official
README, 250k-350k best in the paper), then optionally re-weight categories to target ratios (e.g. the Cambrian-7M
ratio table) at a fixed total.

``plan_mixture`` works on counts only (testable by hand); ``build_mixture`` turns a plan into a concrete
``[M, 2]`` (source, record) selection for ``SupervisedDataset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..typed import ConfigError

# Cambrian-7M category ratios (official README "optimal ratio", docs/official-code.md#data-mix), in percent.
CAMBRIAN_7M_RATIOS = {
    "language": 21.00,
    "general": 34.52,
    "ocr": 27.22,
    "counting": 8.71,
    "math": 7.20,
    "code": 0.87,
    "science": 0.88,
}
DEFAULT_CAP = 350_000


@dataclass
class SourceSpec:
    size: int
    category: str = "general"


def cap_counts(sizes: Mapping[str, int], t: int | None = DEFAULT_CAP) -> dict[str, int]:
    """Data balancing: ``min(size, t)`` per source (``t=None``: no cap)."""
    return {k: (int(v) if t is None else min(int(v), int(t))) for k, v in sizes.items()}


def plan_mixture(
    sources: Mapping[str, SourceSpec],
    cap: int | None = DEFAULT_CAP,
    ratios: Mapping[str, float] | None = None,
    total: int | None = None,
) -> dict[str, int]:
    """How many samples to take from each source.

    1. cap every source at ``cap``;
    2. with ``ratios`` (category -> weight, any scale): category ``c`` gets ``total * r_c / sum(r)`` samples
       (``total`` defaults to the largest total the capped pool can serve at these ratios), split across the
       category's sources in proportion to their capped sizes. A category never gets more than it has; the
       largest-remainder rule makes the counts add up exactly.
    """
    capped = cap_counts({k: s.size for k, s in sources.items()}, cap)
    if not ratios:
        return capped
    cats: dict[str, list[str]] = {}
    for k, s in sources.items():
        cats.setdefault(s.category, []).append(k)
    missing = [c for c, r in ratios.items() if r > 0 and c not in cats]
    if missing:
        raise ConfigError(f"ratio given for categories without sources: {missing}")
    rsum = float(sum(ratios.values()))
    avail = {c: sum(capped[k] for k in cats[c]) for c in cats}
    max_total = min(avail[c] * rsum / r for c, r in ratios.items() if r > 0)
    if total is None:
        total = int(max_total + 1e-9)
    if total > max_total + 1e-6:
        raise ConfigError(f"total {total} exceeds what the capped sources can serve at these ratios ({int(max_total)})")
    want = _largest_remainder({c: total * ratios.get(c, 0.0) / rsum for c in cats}, total)
    out = {k: 0 for k in sources}
    for c, ks in cats.items():
        if want[c] == 0:
            continue
        share = _largest_remainder({k: want[c] * capped[k] / avail[c] for k in ks}, want[c])
        out.update(share)
    return out


def _largest_remainder(quota: Mapping[str, float], total: int) -> dict[str, int]:
    base = {k: int(np.floor(v + 1e-9)) for k, v in quota.items()}
    left = total - sum(base.values())
    order = sorted(quota, key=lambda k: (-(quota[k] - base[k]), k))
    for k in order[:left]:
        base[k] += 1
    return base


def build_mixture(sizes: list[int], take: list[int], seed: int = 0) -> np.ndarray:
    """``[M, 2]`` (source, record) pairs: a seeded random subset of ``take[s]`` records of each source ``s``."""
    rng = np.random.default_rng(seed)
    parts = []
    for s, (n, k) in enumerate(zip(sizes, take)):
        if k > n:
            raise ConfigError(f"source {s}: take {k} > size {n}")
        idx = np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
        parts.append(np.stack([np.full(k, s), idx], 1))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), dtype=np.int64)
