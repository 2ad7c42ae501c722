"""95% intervals for small evaluation sets: percentile bootstrap over questions.

Every figure that carries a claim (own vs other image, one encoder vs another) is a mean over a few dozen to a few
hundred questions, so it gets an interval. Three shapes cover the toolkit's needs:

- ``bootstrap_mean``: one list of per-question scores (0/1 or partial credit) -> mean and interval.
- ``bootstrap_stratified``: per-task score lists combined by any formula (CV-Bench's official overall, a category
  average): each task is resampled within itself, so the task sizes stay fixed as in the real evaluation.
- ``bootstrap_paired_diff``: two conditions scored on the same questions (own vs other image): the questions are
  resampled jointly, so the interval of the difference accounts for the pairing. A difference is *supported*
  when its interval excludes 0.
- ``Strata`` with ``strata_interval`` / ``strata_paired_diff``: a figure given as per-question values split into
  strata plus the formula of the strata means (a plain mean is one stratum; CV-Bench's official overall is the
  mean of its 2D and 3D source means). The paired difference of a formula that is linear in the strata means
  (every formula here: means of means) is the same formula of the per-question differences, so it is
  ``bootstrap_stratified`` of those differences; with one stratum it is ``bootstrap_paired_diff``.

Why paired rather than "the two intervals do not overlap": the conditions answer the same questions, so their
scores are correlated question by question; comparing two separate intervals ignores that and is conservative
(two overlapping 95% intervals can still hold a difference whose own interval excludes 0).

The resampling is seeded, so a report prints the same interval every time for the same scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float  # the statistic on the real data
    low: float
    high: float
    n: int  # questions behind it (summed over tasks for a stratified one)

    def excludes(self, x: float = 0.0) -> bool:
        return not (self.low <= x <= self.high)

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def _scores(values: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what}: no scores to bootstrap")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: scores must be finite numbers")
    return a


def _bounds(samples: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_mean(
    values: Sequence[float], resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
) -> Interval:
    """Mean of per-question scores with its percentile-bootstrap interval."""
    a = _scores(values, "bootstrap_mean")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(resamples, a.size))
    lo, hi = _bounds(a[idx].mean(axis=1), level)
    return Interval(float(a.mean()), lo, hi, int(a.size))


def bootstrap_stratified(
    per_task: Mapping[str, Sequence[float]],
    combine: Callable[[Mapping[str, float]], float] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Interval:
    """``combine({task: mean score})`` (default: the plain mean of the task means) with an interval from resampling
    each task's questions within the task."""
    if not per_task:
        raise ValueError("bootstrap_stratified: no tasks")
    combine = combine or (lambda means: float(np.mean(list(means.values()))))
    arrays = {t: _scores(v, f"task {t!r}") for t, v in per_task.items()}
    rng = np.random.default_rng(seed)
    draws = {t: a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1) for t, a in arrays.items()}
    samples = np.array([combine({t: float(d[i]) for t, d in draws.items()}) for i in range(resamples)])
    lo, hi = _bounds(samples, level)
    value = float(combine({t: float(a.mean()) for t, a in arrays.items()}))
    return Interval(value, lo, hi, int(sum(a.size for a in arrays.values())))


def bootstrap_paired_diff(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Interval:
    """mean(a) - mean(b) for two conditions scored on the same questions, questions resampled jointly."""
    x, y = _scores(a, "bootstrap_paired_diff (a)"), _scores(b, "bootstrap_paired_diff (b)")
    if x.size != y.size:
        raise ValueError(f"bootstrap_paired_diff: {x.size} scores against {y.size}; pair them question by question")
    d = x - y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    lo, hi = _bounds(d[idx].mean(axis=1), level)
    return Interval(float(d.mean()), lo, hi, int(d.size))


@dataclass
class Strata:
    """Per-question values split into strata, and the formula that turns the strata means into the figure."""

    values: dict[str, list[float]]
    combine: Callable[[Mapping[str, float]], float]

    def point(self) -> float:
        return float(self.combine({k: sum(v) / len(v) for k, v in self.values.items()}))

    @property
    def n(self) -> int:
        return sum(len(v) for v in self.values.values())


def strata_interval(s: Strata, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0):
    """The figure with its interval, questions resampled within each stratum."""
    return bootstrap_stratified(s.values, s.combine, resamples=resamples, level=level, seed=seed)


def strata_paired_diff(
    a: Strata, b: Strata, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
) -> Interval:
    """a - b on the same questions (same strata, same order, the same formula): the paired bootstrap, stratified."""
    if a.values.keys() != b.values.keys() or any(len(a.values[k]) != len(b.values[k]) for k in a.values):
        raise ValueError("paired difference of different question sets")
    if len(a.values) == 1:
        k = next(iter(a.values))
        return bootstrap_paired_diff(a.values[k], b.values[k], resamples=resamples, level=level, seed=seed)
    diff = {k: [x - y for x, y in zip(a.values[k], b.values[k])] for k in a.values}
    return bootstrap_stratified(diff, a.combine, resamples=resamples, level=level, seed=seed)
