"""The quad-tree of V*'s search: how a patch splits, and how its sub-patches are ranked.

- :func:`split`: 2x2 sub-patches, or a 1x4 column / 4x1 row for a patch at least twice as tall as wide / wide as
  tall; integer strides, the last row and column take the remainder (V*'s ``get_sub_patches``).
- :func:`shares`: the fraction of a heatmap's mass that falls inside each sub-patch. A heatmap is any ``[h, w]``
  grid of non-negative values laid over its patch (a localiser's cells, or one value per pixel); each cell counts
  with the part of it a sub-patch covers, so a coarse grid ranks sub-patches whose borders cut through cells.
- :func:`child_scores`: a sub-patch's priority is the sum over the patch being split and all its ancestors of its
  share of that ancestor's heatmap divided by ``decay ** level`` (root level 1; V*: decay 4): coarse evidence keeps
  a say deep in the tree, and evidence from each finer level counts less.
- :func:`normalize`: min-max to [0, 1]; a flat map becomes zeros (it ranks nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .boxes import Box

Patch = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def split(patch: Patch) -> list[Patch]:
    x0, y0, x1, y1 = patch
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise ValueError(f"cannot split an empty patch {patch}")
    ratio = h / w
    nx, ny = (1, 4) if ratio >= 2 else (4, 1) if ratio <= 0.5 else (2, 2)
    sx, sy = w // nx, h // ny
    out = []
    for j in range(ny):
        for i in range(nx):
            a, b = x0 + i * sx, y0 + j * sy
            out.append((a, b, x1 if i == nx - 1 else a + sx, y1 if j == ny - 1 else b + sy))
    return out


def normalize(heatmap: np.ndarray) -> np.ndarray:
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def _overlap_1d(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Length of each cell ``[edges[k], edges[k+1])`` inside ``[lo, hi)``."""
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def mass_in(heatmap: np.ndarray, patch: Box, region: Box) -> float:
    """Heatmap mass inside ``region`` (pixels), each cell weighted by the fraction of it the region covers."""
    h = np.asarray(heatmap, dtype=np.float64)
    gh, gw = h.shape
    xe = np.linspace(patch[0], patch[2], gw + 1)
    ye = np.linspace(patch[1], patch[3], gh + 1)
    fx = _overlap_1d(xe, region[0], region[2]) / np.diff(xe)
    fy = _overlap_1d(ye, region[1], region[3]) / np.diff(ye)
    return float(fy @ h @ fx)


def shares(heatmap: np.ndarray, patch: Box, regions: Sequence[Box]) -> list[float]:
    """Each region's share of the heatmap's total mass over ``patch`` (all zeros for an empty heatmap)."""
    total = float(np.asarray(heatmap, dtype=np.float64).sum())
    if total <= 0:
        return [0.0] * len(regions)
    return [mass_in(heatmap, patch, r) / total for r in regions]


def child_scores(chain: Sequence[tuple[np.ndarray, Box, int]], children: Sequence[Box], decay: float) -> list[float]:
    """``chain``: ``(heatmap, patch, level)`` of the patch being split and each of its ancestors up to the root."""
    scores = [0.0] * len(children)
    for heatmap, patch, level in chain:
        for k, s in enumerate(shares(heatmap, patch, children)):
            scores[k] += s / decay**level
    return scores
