"""95% intervals for the demo's own / other / blind figures, and which differences they support.

Every figure of ``image_use_accuracy`` (one benchmark task under one condition) is rebuilt from per-question scores
(``Benchmark.question_scores`` of the predictions each condition wrote) as a :class:`cambrian.eval.stats.Strata`,
the same helpers the study's tables use:

- a task (CV-Bench-Synth Count / Relation / Depth / Distance, synth-attribute colour / shape, easy-VQA colour /
  shape / yes/no, synth-attribute overall) is the plain mean of its questions: one stratum, the percentile
  bootstrap over its questions;
- CV-Bench-Synth ``overall`` is the official formula, the mean of the 2D and the 3D accuracy, each the mean of its
  sources' accuracies (``cambrian.cvbench.score.formula_strata``; one source per type in CV-Bench-Synth): the
  questions are resampled *within each source*, so every draw keeps the real 2D / 3D question counts, and the
  formula is applied to each draw;
- easy-VQA ``colour+shape`` is the micro mean of the colour and shape questions, resampled within each type.

Differences. own, other and blind answer the *same* questions, so own - other and own - blind get the paired
bootstrap (``strata_paired_diff``): the questions are resampled jointly and the formula is applied to the
per-question differences (every formula here is linear in the strata means). A difference is *supported* when
its 95% interval excludes 0. The looser rule "the two intervals are disjoint" ignores that the conditions are
correlated question by question; it misses real differences (see ``tests/test_eval_stats.py``), so it is not used.

What the intervals do not cover: the questions of one CV-Bench-Synth scene are not independent (the demo asks up to
``cvbench_max_per_image`` questions per image and task), and the bootstrap resamples questions, not scenes; nor
does it cover training noise (another seed trains another model).

Every interval uses the same seeded resampling (``SEED``), so a report prints the same numbers for the same scores.

The option-likelihood reading (``likelihood``: each multiple-choice question answered by the option the model finds
most likely, ``cambrian.eval.likelihood``) gets the same treatment from its own per-question scores
(:func:`read_likelihood_scores`): the same rows, intervals and paired differences, reported apart from the official
generation figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..eval.stats import DEFAULT_LEVEL, DEFAULT_RESAMPLES, Interval, Strata, strata_interval, strata_paired_diff

SEED = 0
CONDITIONS = ("own", "other", "blind")
DIFFERENCES = (("own", "other"), ("own", "blind"))
CV_TASKS = ("Count", "Relation", "Depth", "Distance")
EASYVQA_TASKS = {"color": "colour", "shape": "shape", "yes/no": "yes/no"}
METHOD = {
    "interval": "95% percentile bootstrap over questions",
    "resamples": DEFAULT_RESAMPLES,
    "level": DEFAULT_LEVEL,
    "seed": SEED,
    "cvbench_overall": "official formula (mean of 2D and 3D); questions resampled within each source",
    "difference": "paired bootstrap (the same questions under both conditions); supported when the interval excludes 0",
}


def question_labels(bench: str, samples: Sequence) -> dict:
    """``{"idx", "task", "stratum"}``: one entry per question, in sample order. ``task`` names the row of
    ``image_use_accuracy`` the question belongs to; ``stratum`` is its CV-Bench source (``"2D:Synth2D"``) or its
    task."""
    idx = [str(s.idx) for s in samples]
    if bench in ("cvbench-synth", "cvbench"):
        task = [str(s.meta["task"]) for s in samples]
        stratum = [f"{s.meta['type']}:{s.meta['source']}" for s in samples]
    elif bench == "easyvqa":
        task = [EASYVQA_TASKS.get(s.meta["category"], s.meta["category"]) for s in samples]
        stratum = list(task)
    else:
        task = [str(s.meta["category"]) for s in samples]
        stratum = list(task)
    return {"idx": idx, "task": task, "stratum": stratum}


def read_question_scores(bench, samples: Sequence, bench_dir: str | Path) -> list[float]:
    """Per-question scores of one condition from its ``predictions.jsonl`` (a missing answer scores 0, as in the
    benchmark's metrics)."""
    from ..eval.predictions import align_predictions, read_predictions

    preds = align_predictions(samples, read_predictions(Path(bench_dir) / "predictions.jsonl"))
    scores = bench.question_scores(samples, preds)
    if scores is None:
        raise ValueError(f"{bench.name}: no per-question scores, so no interval")
    return [float(x) for x in scores]


def read_likelihood_scores(bench, samples: Sequence, bench_dir: str | Path) -> list[float]:
    """Per-question scores of one condition's option-likelihood choices, from the ``likelihood.jsonl`` that
    ``run_likelihood`` wrote: the ``likelihood`` reading (the option letters where the prompt asks for a letter,
    else the option texts), scored by the benchmark's own rules; a question without a record scores 0."""
    from ..eval.likelihood import LIKELIHOOD, choice_predictions
    from ..utils.io import read_jsonl

    records = read_jsonl(Path(bench_dir) / "likelihood.jsonl")
    preds = choice_predictions(bench, samples, records).get(LIKELIHOOD, {})
    scores = bench.question_scores(samples, preds)
    if scores is None:
        raise ValueError(f"{bench.name}: no per-question scores, so no interval")
    return [float(x) for x in scores]


def _mean_of(key: str):
    return lambda means: means[key]


def row_strata(bench: str, q: Mapping, cond: str) -> dict[str, Strata]:
    """``{task: Strata}`` of one benchmark under one condition, the rows of ``image_use_accuracy``; ``q`` holds
    ``task``, ``stratum`` and the condition's per-question scores (``q[cond]``)."""
    scores, tasks = list(q[cond]), list(q["task"])

    def where(pred) -> list[float]:
        return [s for s, t, st in zip(scores, tasks, q["stratum"]) if pred(t, st)]

    def one(name: str, pred) -> Strata:
        return Strata({name: where(pred)}, _mean_of(name))

    present = [t for t in dict.fromkeys(tasks)]
    out: dict[str, Strata] = {}
    if bench in ("cvbench-synth", "cvbench"):
        from ..cvbench.score import formula_strata

        for t in CV_TASKS:
            if t in present:
                out[t] = one(t, lambda tt, _, t=t: tt == t)
        items = [{"type": st.split(":", 1)[0], "source": st.split(":", 1)[1]} for st in q["stratum"]]
        idx, combine = formula_strata(items, "overall")
        out["overall"] = Strata({k: [scores[i] for i in ix] for k, ix in idx.items()}, combine)
        return out
    if bench == "easyvqa":
        for t in ("colour", "shape", "yes/no"):
            if t in present:
                out[t] = one(t, lambda tt, _, t=t: tt == t)
        parts = {t: where(lambda tt, _, t=t: tt == t) for t in ("colour", "shape") if t in present}
        if parts:
            n = {t: len(v) for t, v in parts.items()}
            out["colour+shape"] = Strata(
                parts, lambda m, n=n: sum(m[t] * n[t] for t in n) / sum(n.values())
            )  # the micro mean of the two types
        return out
    out["overall"] = one("overall", lambda *_: True)
    for t in present:
        out[t] = one(t, lambda tt, _, t=t: tt == t)
    return out


def _rounded(iv: Interval) -> tuple[float, float]:
    return round(iv.low, 4), round(iv.high, 4)


def image_use_statistics(questions: Mapping[str, Mapping]) -> dict:
    """``questions[bench] = {"task", "stratum", "own", "other", "blind"}`` (per-question lists) ->

    - ``accuracy[bench][task][cond]``: the figure itself (fractions; the formula of :func:`row_strata` on the
      scores, so it equals the benchmark's metric that ``image_use_accuracy`` reads);
    - ``intervals[bench][task][cond] = [low, high]`` (fractions; the keys of ``image_use_accuracy``);
    - ``n[bench][task]``: questions behind the row;
    - ``differences[bench][task]["own-other" | "own-blind"] = {"value", "low", "high", "supported"}``: the
      paired bootstrap of the difference; ``supported`` when its interval excludes 0.
    """
    values: dict = {}
    intervals: dict = {}
    counts: dict = {}
    diffs: dict = {}
    for bench, q in questions.items():
        conds = [c for c in CONDITIONS if q.get(c) is not None]
        if not conds:
            continue
        rows = {c: row_strata(bench, q, c) for c in conds}
        for task in rows[conds[0]]:
            if any(not v for v in rows[conds[0]][task].values.values()):
                continue  # a stratum without questions: no figure
            counts.setdefault(bench, {})[task] = rows[conds[0]][task].n
            for c in conds:
                iv = strata_interval(rows[c][task], seed=SEED)
                values.setdefault(bench, {}).setdefault(task, {})[c] = iv.value
                intervals.setdefault(bench, {}).setdefault(task, {})[c] = list(_rounded(iv))
            for a, b in DIFFERENCES:
                if a in rows and b in rows:
                    d = strata_paired_diff(rows[a][task], rows[b][task], seed=SEED)
                    diffs.setdefault(bench, {}).setdefault(task, {})[f"{a}-{b}"] = {
                        "value": round(d.value, 4),
                        "low": round(d.low, 4),
                        "high": round(d.high, 4),
                        "supported": d.excludes(0.0),
                    }
    return {"accuracy": values, "intervals": intervals, "n": counts, "differences": diffs, "method": dict(METHOD)}


def difference_phrase(bench: str, task: str, key: str, d: Mapping) -> str:
    """``easyvqa colour: own > other by +63.2 [+47.4, +78.9]`` (supported) or
    ``cvbench-synth Count: own - blind +0.8 [-4.2, +5.8], interval includes 0``; percentage points."""
    a, b = key.split("-", 1)
    span = f"{100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
    if d["supported"]:
        return f"{bench} {task}: {a} {'>' if d['value'] > 0 else '<'} {b} by {span}"
    return f"{bench} {task}: {a} - {b} {span}, interval includes 0"


def supported_lines(differences: Mapping) -> tuple[list[str], list[str]]:
    """(supported, not supported) own-vs-other / own-vs-blind differences, one :func:`difference_phrase` each."""
    yes, no = [], []
    for bench, tasks in differences.items():
        for task, ds in tasks.items():
            for key, d in ds.items():
                (yes if d["supported"] else no).append(difference_phrase(bench, task, key, d))
    return yes, no


def write_question_scores(path: str | Path, questions: Mapping[str, Mapping]) -> None:
    """One line per question: ``{"bench", "idx", "task", "stratum", "own", "other", "blind"}`` (what the
    intervals were computed from; ``image_use_statistics(read_question_file(path))`` recomputes them)."""
    import json

    from ..utils.io import atomic_write_text

    lines = []
    for bench, q in questions.items():
        for i in range(len(q["idx"])):
            row = {"bench": bench, **{k: q[k][i] for k in ("idx", "task", "stratum")}}
            row.update({c: q[c][i] for c in CONDITIONS if q.get(c) is not None})
            lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "".join(x + "\n" for x in lines))


def read_question_file(path: str | Path) -> dict:
    """:func:`write_question_scores`'s file back as ``questions[bench]``."""
    from ..utils.io import read_jsonl

    out: dict = {}
    for r in read_jsonl(path):
        q = out.setdefault(r["bench"], {"idx": [], "task": [], "stratum": []})
        for k, v in r.items():
            if k != "bench":
                q.setdefault(k, []).append(v)
    return out
