"""Guided search on synth-vstar (or V*Bench): accuracy with and without search, the blind and other-image controls,
an oracle-box ablation, the search's own Top-1, and seconds per question, all in one run on the same questions.

Conditions (each answers every question by option likelihood, ``cambrian eval run --mc likelihood``'s reading):

- ``own``: the question's image, no search (the baseline);
- ``other``: another scene's image (does the model read its image?);
- ``blind``: no image;
- ``search``: guided search (``cambrian.search``, settings from ``--search-set``);
- ``oracle``: the same memory built from the ground-truth boxes (trigger always): how well the answer does given a
  perfect search, which separates "the search did not find it" from "the model cannot read the crop".

    python benchmarks/search_vstar.py --model runs/demo/checkpoint --data DIR/synth-vstar [--bench synth-vstar]
        [--limit N] [--batch-size 8] [--search-set trigger=always ...] [--conditions own,search] [--out DIR]

Prints a table (accuracy with 95% intervals per question type, search - own with its paired interval, Top-1 at
IoU > 0.5, mean path length, share searched, seconds per question and the ratio to ``own``) and writes
``results.json``, ``report.md`` and the first pictures of the searches under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = ("own", "other", "blind", "search", "oracle")


def per_item(bench, samples, model, vision, batch_size):
    """(correct per sample [0/1], seconds) of one condition."""
    from cambrian.eval.conditions import condition_samples
    from cambrian.eval.likelihood import LIKELIHOOD, choice_predictions, option_records

    fed = condition_samples(samples, vision)
    t0 = time.perf_counter()
    records = option_records(model, bench, fed, vision=vision, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    preds = choice_predictions(bench, samples, records)[LIKELIHOOD]
    correct = [float(bench.score([s], {s.idx: preds[s.idx]})["accuracy"]) for s in samples]
    return correct, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="the benchmark's directory")
    ap.add_argument("--bench", default="synth-vstar")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--search-set", action="append", default=[])
    ap.add_argument("--oracle-set", action="append", default=[], help="extra settings for the oracle condition")
    ap.add_argument("--png", type=int, default=6)
    ap.add_argument("--out", default="runs/search_vstar")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    from cambrian.eval.adapters import load_eval_model
    from cambrian.eval.api import get_benchmark
    from cambrian.eval.stats import bootstrap_mean, bootstrap_paired_diff
    from cambrian.search.eval_model import SearchEvalModel, search_metrics, truth_of
    from cambrian.search.localise import OracleLocaliser
    from cambrian.search.settings import search_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise SystemExit(f"error: unknown condition(s) {bad}; choose from {CONDITIONS}")
    bench = get_benchmark(args.bench)
    samples = bench.load(args.data)[: args.limit]
    truth = truth_of(samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = load_eval_model(args.model)
    load_s = time.perf_counter() - t0
    settings = search_settings(args.search_set)
    oracle_settings = search_settings(["trigger=always", "refine_steps=0", *args.oracle_set], settings.to_dict())
    results: dict = {"model": args.model, "bench": args.bench, "n": len(samples), "load_seconds": round(load_s, 2)}
    results["settings"] = settings.to_dict()
    scores, seconds = {}, {}
    for cond in conditions:
        log = out / "search" / cond
        if cond in ("search", "oracle") and log.exists():
            for f in log.rglob("*"):
                if f.is_file():
                    f.unlink()
        if cond == "search":
            model = SearchEvalModel(
                base.model, settings, name="search", log_dir=log, truth={bench.name: truth}, png_items=args.png
            )
        elif cond == "oracle":
            boxes = {((bench.name, idx), name): [tuple(b)] for idx, ts in truth.items() for name, b in ts}
            model = SearchEvalModel(
                base.model,
                oracle_settings.__class__(**{**oracle_settings.to_dict(), "targets": "annotated"}),
                name="oracle",
                log_dir=log,
                truth={bench.name: truth},
                png_items=2,
                localiser=OracleLocaliser(boxes),
            )
        else:
            model = base
        vision = {"own": "enabled", "other": "other", "blind": "disabled"}.get(cond, "enabled")
        print(f"[{cond}] {len(samples)} questions ...", file=sys.stderr, flush=True)
        scores[cond], seconds[cond] = per_item(bench, samples, model, vision, args.batch_size)
        if cond in ("search", "oracle"):
            results[f"{cond}_search"] = search_metrics(out / "search" / cond, bench.name, truth)
    types = sorted({s.meta["category"] for s in samples})
    table = {}
    for cond in conditions:
        row = {"overall": bootstrap_mean(scores[cond]).as_dict()}
        for t in types:
            row[t] = bootstrap_mean([v for v, s in zip(scores[cond], samples) if s.meta["category"] == t]).as_dict()
        row["seconds_per_question"] = seconds[cond] / max(1, len(samples))
        table[cond] = row
    results["conditions"] = table
    if "own" in scores and "search" in scores:
        results["search_minus_own"] = bootstrap_paired_diff(scores["search"], scores["own"]).as_dict()
        results["seconds_ratio_search_over_own"] = seconds["search"] / max(1e-9, seconds["own"])
    if "own" in scores and "oracle" in scores:
        results["oracle_minus_own"] = bootstrap_paired_diff(scores["oracle"], scores["own"]).as_dict()
    results["per_item"] = {c: scores[c] for c in conditions}
    results["idx"] = [s.idx for s in samples]
    (out / "results.json").write_text(json.dumps(results, indent=2))

    def pct(d):
        return f"{100 * d['value']:.1f} [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"

    head = ["condition", "overall", *types, "s/question"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cond in conditions:
        r = table[cond]
        cells = [cond, pct(r["overall"]), *[pct(r[t]) for t in types], f"{r['seconds_per_question']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{t}: {table[conditions[0]][t]['n']}" for t in types)
    notes = [f"n = {len(samples)} questions ({counts})"]
    if "search_minus_own" in results:
        notes.append(f"search - own (paired): {pct(results['search_minus_own'])} points")
        notes.append(f"seconds per question, search / own: {results['seconds_ratio_search_over_own']:.2f}x")
    if "oracle_minus_own" in results:
        notes.append(f"oracle - own (paired): {pct(results['oracle_minus_own'])} points")
    for cond in ("search", "oracle"):
        m = results.get(f"{cond}_search")
        if m:
            top1 = "n/a" if m["top1"] is None else f"{100 * m['top1']:.1f}%"
            length = "n/a" if m["mean_path_length"] is None else f"{m['mean_path_length']:.2f}"
            notes.append(
                f"{cond}: searched {m['searched']} of {m['logged']} questions; Top-1 (IoU > 0.5) {top1} of "
                f"{m['targets']} targets; mean path length (found) {length}"
            )
    report = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
