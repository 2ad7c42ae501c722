"""A study's table: per-run column values, category averages, vision-enabled vs vision-disabled deltas and run-vs-run
differences, each with a 95% interval (``cambrian.eval.stats``).

Columns and categories follow the paper's table: a column is one benchmark metric (CV-Bench gives two, 2D and 3D);
a category average is the mean of its columns (MME-P / 20 as the paper; ``Benchmark.average_value``).
``NANO_TABLE`` is the offline study's table (synthetic sets, never mixed into the paper's); ``paper`` uses
``cambrian.eval.report.PAPER_TABLE``. Knowledge has no offline source: its nano category is empty and the report
says so.

Intervals: each column is a formula of per-question scores (``Benchmark.question_scores``): a plain mean, or for
CV-Bench the official mean of source means (``cambrian.cvbench.score.formula_strata``). A column or category value
gets ``bootstrap_stratified`` over its strata (questions resampled within each source / benchmark). Differences
are paired (the same questions under both conditions): a one-stratum column uses ``bootstrap_paired_diff``;
a formula of several strata, whose difference is the same formula of the per-question differences, uses
``bootstrap_stratified`` on those differences (the paired bootstrap, stratified). A difference is *supported* when
its interval excludes 0. A benchmark without per-question scores (MME's sums, MMBench's circular groups) gets its
value but no interval, and so does a category that contains it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..eval.stats import Interval, Strata, strata_interval, strata_paired_diff

NANO_TABLE: list[tuple[str, list[tuple[str, str, str | None]]]] = [
    ("General", [("easy-VQA", "easyvqa", None)]),
    ("Knowledge", []),  # no offline source: the report says so instead of inventing one
    ("OCR & Chart", [("synth-text", "synth-text", None), ("synth-chart", "synth-chart", None)]),
    (
        "Vision-Centric",
        [
            ("CV-Bench-Synth-2D", "cvbench-synth", "accuracy_2d"),
            ("CV-Bench-Synth-3D", "cvbench-synth", "accuracy_3d"),
            ("synth-attribute", "synth-attribute", None),
        ],
    ),
]
CATEGORIES = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")
SEED = 0  # every interval of a report uses the same seeded resampling


@dataclasses.dataclass(frozen=True)
class Column:
    label: str
    bench: str
    key: str | None  # metric key (None: the benchmark's primary metric)
    group: str


def table(kind: str, benches: Sequence[str]) -> list[tuple[str, list[Column]]]:
    """The category table restricted to the study's benchmarks (a category may end up empty); benchmarks outside
    it form an "Other" group that enters no average."""
    from ..eval.report import PAPER_TABLE

    spec = NANO_TABLE if kind == "nano" else PAPER_TABLE
    out, placed = [], set()
    for group, cols in spec:
        keep = [Column(lbl, b, k, group) for lbl, b, k in cols if b in benches]
        placed |= {c.bench for c in keep}
        out.append((group, keep))
    other = [Column(b, b, None, "Other") for b in benches if b not in placed]
    if other:
        out.append(("Other", other))
    return out


# ---- strata ----------------------------------------------------------------------------------------------
def column_strata(col: Column, bench, samples, per_question: Sequence[float]) -> Strata:
    """``per_question`` (one value per sample) arranged as the column's formula; percent units."""
    vals = [100.0 * float(v) for v in per_question]
    key = col.key
    if key is not None and key in ("accuracy_2d", "accuracy_3d", "overall"):
        from ..cvbench.benchmark import _item
        from ..cvbench.score import formula_strata

        idx, combine = formula_strata([_item(s) for s in samples], key)
        return Strata({f"{col.label}|{k}": [vals[i] for i in ix] for k, ix in idx.items()}, _strip(combine, col.label))
    if key is not None and key != bench.primary_metric:
        raise ValueError(f"{col.label}: no per-question formula for metric {key!r} of {col.bench}")
    return Strata({col.label: vals}, lambda m, _k=col.label: m[_k])


def _strip(combine, label: str):
    def f(means):
        return combine({k.split("|", 1)[1]: v for k, v in means.items() if k.startswith(label + "|")})

    return f


def category_strata(parts: Sequence[Strata]) -> Strata:
    """The mean of several columns' formulas, as one formula over all their strata."""
    values: dict[str, list[float]] = {}
    for p in parts:
        values.update(p.values)

    def combine(means):
        return sum(p.combine({k: means[k] for k in p.values}) for p in parts) / len(parts)

    return Strata(values, combine)


def interval(s: Strata) -> Interval:
    return strata_interval(s, seed=SEED)


def paired(a: Strata, b: Strata) -> Interval:
    """a - b on the same questions (same strata, same order)."""
    return strata_paired_diff(a, b, seed=SEED)


# ---- one run's evaluation, read back from its eval directory ---------------------------------------------
class BenchCache:
    """Benchmarks and their samples, loaded once per tabulation."""

    def __init__(self, benchmarks: Mapping[str, dict], data_root: str | None):
        from ..eval.api import get_benchmark

        self.benches = {name: get_benchmark(name, **(opts or {})) for name, opts in benchmarks.items()}
        self.data_root = data_root
        self._samples: dict[str, list] = {}

    def samples(self, name: str) -> list:
        if name not in self._samples:
            b = self.benches[name]
            self._samples[name] = b.load(str(Path(self.data_root) / name) if self.data_root else None)
        return self._samples[name]


def read_question_scores(eval_dir: Path, bc: BenchCache, name: str) -> list[float] | None:
    """Per-question scores of one benchmark in one eval run dir (None when it has none or the run is missing)."""
    from ..eval.runner import align_predictions, read_predictions

    path = Path(eval_dir) / name / "predictions.jsonl"
    if not (Path(eval_dir) / name / "metrics.json").exists() or not path.exists():
        return None
    samples = bc.samples(name)
    preds = align_predictions(samples, read_predictions(path))
    return bc.benches[name].question_scores(samples, preds)


def read_metric(eval_dir: Path, bc: BenchCache, col: Column) -> float | None:
    """The column's value (average units: percent, MME-P / 20) from the official metrics.json."""
    f = Path(eval_dir) / col.bench / "metrics.json"
    if not f.exists():
        return None
    m = json.loads(f.read_text(encoding="utf-8")).get("metrics", {})
    b = bc.benches[col.bench]
    if col.key is not None:
        v = m.get(col.key)
        return None if v is None else 100.0 * float(v)
    return b.average_value(m)


def evaluate_columns(eval_dir: Path, bc: BenchCache, groups) -> dict:
    """{column label: {"value", "strata" (Strata or None)}} for one eval run dir."""
    out = {}
    for _, cols in groups:
        for col in cols:
            scores = read_question_scores(eval_dir, bc, col.bench)
            strata = None
            if scores is not None:
                strata = column_strata(col, bc.benches[col.bench], bc.samples(col.bench), scores)
            out[col.label] = {"value": read_metric(eval_dir, bc, col), "strata": strata}
    return out


def chance_columns(bc: BenchCache, groups) -> dict[str, float | None]:
    """Each column's random-guess level under its own formula (None when a benchmark does not declare it)."""
    out = {}
    for _, cols in groups:
        for col in cols:
            b = bc.benches[col.bench]
            samples = bc.samples(col.bench)
            ch = [b.question_chance(s) for s in samples]
            if any(c is None for c in ch):
                out[col.label] = None
                continue
            out[col.label] = column_strata(col, b, samples, ch).point()
    return out
