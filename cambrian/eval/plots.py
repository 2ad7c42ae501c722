"""PNG plots in the style of the paper's Figure 3 (matplotlib, Agg backend).

- ``plot_vision``: per benchmark, vision enabled vs vision disabled (runs paired by model name and their
  ``vision`` field), with the random-guess level where the benchmark declares one.
- ``plot_clustering``: left, the correlation matrix of benchmarks across runs; right, a PCA of the
  benchmarks (each benchmark is a point whose features are its z-scored results over the runs), coloured by
  the paper's groups. Needs at least two runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.io import atomic_save_figure
from .report import PAPER_TABLE, Run, column_matrix, label_runs

GROUP_COLORS = {
    "General": "#1f77b4",
    "Knowledge": "#2ca02c",
    "OCR & Chart": "#ff7f0e",
    "Vision-Centric": "#d62728",
    "Other": "#7f7f7f",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _chance(label: str) -> float | None:
    bench = {c: b for _, cs in PAPER_TABLE for c, b, _ in cs}.get(label, label.lower())
    try:
        from .api import get_benchmark

        ch = get_benchmark(bench).chance
    except Exception:  # noqa: BLE001
        return None
    return None if ch is None else 100.0 * ch


def vision_pairs(runs: Sequence[Run]) -> list[tuple[str, Run, Run]]:
    on = {r.model: r for r in runs if r.vision == "enabled"}
    off = {r.model: r for r in runs if r.vision == "disabled"}
    return [(m, on[m], off[m]) for m in on if m in off]


def plot_vision(runs: Sequence[Run], path: str | Path) -> Path | None:
    pairs = vision_pairs(runs)
    if not pairs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(pairs), 1, figsize=(max(8, 0.9 * 18), 4.2 * len(pairs)), squeeze=False)
    for ax, (model, r_on, r_off) in zip(axes[:, 0], pairs):
        cols, grp, vals = column_matrix([r_on, r_off])
        x = np.arange(len(cols))
        on = np.array([np.nan if v is None else v for v in vals[0]], dtype=float)
        off = np.array([np.nan if v is None else v for v in vals[1]], dtype=float)
        ax.bar(x - 0.2, on, 0.4, label="vision enabled", color=[GROUP_COLORS[g] for g in grp])
        ax.bar(
            x + 0.2,
            off,
            0.4,
            label="vision disabled",
            color=[GROUP_COLORS[g] for g in grp],
            alpha=0.35,
            hatch="//",
            edgecolor="black",
            linewidth=0.5,
        )
        ch = [(_chance(c)) for c in cols]
        cx = [i for i, c in enumerate(ch) if c is not None]
        if cx:
            ax.scatter(cx, [ch[i] for i in cx], marker="_", s=300, color="black", zorder=3, label="random guess")
        for i in range(len(cols)):
            if not (np.isnan(on[i]) or np.isnan(off[i])):
                ax.annotate(f"{on[i] - off[i]:+.1f}", (x[i], max(on[i], off[i]) + 1.5), ha="center", fontsize=7)
        ax.set_xticks(x, cols, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("score (%; MME-P / 20)")
        ax.set_ylim(0, max(100.0, np.nanmax(np.r_[on, off, 0]) + 8))
        ax.set_title(f"{model}: vision enabled vs disabled (label = enabled − disabled)")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def correlation_and_pca(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values[run, bench] (NaN = missing) -> (bench×bench Pearson correlation, bench 2-D PCA coordinates,
    explained variance ratio). Missing entries are filled with the benchmark's mean over runs."""
    v = values.astype(float).copy()
    col_mean = np.nanmean(v, axis=0)
    idx = np.where(np.isnan(v))
    v[idx] = np.take(col_mean, idx[1])
    std = v.std(axis=0)
    z = np.where(std > 0, (v - v.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)
    n_runs = v.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (z.T @ z) / n_runs
    corr[:, std == 0] = np.nan
    corr[std == 0, :] = np.nan
    pts = z.T  # benchmarks as points, runs as features
    pts = pts - pts.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(pts, full_matrices=False)
    coords = np.zeros((pts.shape[0], 2))
    k = min(2, len(s))
    coords[:, :k] = u[:, :k] * s[:k]
    var = s**2
    ratio = np.zeros(2)
    if var.sum() > 1e-12:  # below that every benchmark sits at the same point (e.g. two runs): no PCA
        ratio[:k] = var[:k] / var.sum()
    coords[:, ratio < 1e-9] = 0.0  # a component with no variance is numerical noise
    return corr, coords, ratio


def plot_clustering(runs: Sequence[Run], path: str | Path) -> Path | None:
    if len(runs) < 2:
        return None
    label_runs(runs)
    cols, grp, vals = column_matrix(runs)
    if len(cols) < 2:
        return None
    values = np.array([[np.nan if v is None else v for v in row] for row in vals], dtype=float)
    keep = ~np.isnan(values).any(axis=0)  # benchmarks missing from some run are left out of the clustering
    dropped = [c for c, k in zip(cols, keep) if not k]
    cols, grp, values = [c for c, k in zip(cols, keep) if k], [g for g, k in zip(grp, keep) if k], values[:, keep]
    if len(cols) < 2:
        return None
    corr, coords, ratio = correlation_and_pca(values)
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(15, 6.5))
    im = a1.imshow(np.ma.masked_invalid(corr), cmap="RdBu_r", vmin=-1, vmax=1)
    a1.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    a1.set_yticks(range(len(cols)), cols, fontsize=8)
    for t, g in zip(a1.get_xticklabels(), grp):
        t.set_color(GROUP_COLORS[g])
    for t, g in zip(a1.get_yticklabels(), grp):
        t.set_color(GROUP_COLORS[g])
    a1.set_title(
        f"benchmark correlation across {len(runs)} runs (grey = constant)"
        + (f"\nleft out (missing in some run): {', '.join(dropped)}" if dropped else ""),
        fontsize=10,
    )
    a1.set_facecolor("#dddddd")
    fig.colorbar(im, ax=a1, fraction=0.046, pad=0.04)
    for g in dict.fromkeys(grp):
        sel = [i for i, gg in enumerate(grp) if gg == g]
        a2.scatter(coords[sel, 0], coords[sel, 1], s=60, color=GROUP_COLORS[g], label=g)
    for i, c in enumerate(cols):
        a2.annotate(c, (coords[i, 0], coords[i, 1]), xytext=(4, 4), textcoords="offset points", fontsize=8)
    a2.axhline(0, color="#cccccc", lw=0.8)
    a2.axvline(0, color="#cccccc", lw=0.8)
    a2.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% var)")
    a2.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% var)")
    a2.set_title(
        "PCA of benchmarks (features: z-scored results per run)"
        + ("\nfewer than 3 runs: the PCA is degenerate" if len(runs) < 3 else ""),
        fontsize=10,
    )
    a2.legend(fontsize=8)
    fig.tight_layout()
    return atomic_save_figure(fig, path)
