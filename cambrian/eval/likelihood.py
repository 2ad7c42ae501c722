"""Option-likelihood answering: ``cambrian eval run --mc likelihood``.

For every multiple-choice sample (``Benchmark.mc_options``) the model does not generate: each option is scored as
the reply to the prompt (the model's ``score_options``: summed log-probability of its tokens) and the most likely one
is the answer, the method of lm-evaluation-harness and of V*'s evaluation. Two readings:

- ``likelihood``: the candidates are what the prompt asks for, the option letters (A, B, ...) of a letter-answered
  benchmark, the option texts where the prompt asks for the text (synth-attribute, easy-VQA, POPE, MME);
- ``likelihood_text``: the option texts of a letter-answered benchmark (the answer without the letter hop).

Comparing the official generation score with these separates "does not know" (all low) from "knows but cannot
put the answer in the requested format" (likelihood high, generation low). They are **not** the paper's protocol:
the chosen option is turned into a reply the benchmark's own scorer reads as that option
(``MCOptions.prediction``), scored with the benchmark's official rules, and every metric is renamed with the
reading's suffix (``overall_likelihood``), like ``--scorer lenient``'s, so it never enters the paper-style table.

Files in ``RUN_DIR/<bench>/``: ``likelihood.jsonl`` (per sample: the letters' and the texts' log-probabilities) and ``metrics.likelihood.json`` / ``metrics.likelihood_text.json`` (``eval report`` lists them under
"Other scorers"). Samples without options (the open questions of MMMU or MathVista) are left out of these metrics;
``n`` says how many were scored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..utils.io import atomic_write_json, atomic_write_text
from .api import Benchmark, EvalSample, GenerationRequest, label_metrics
from .conditions import condition_samples

LIKELIHOOD = "likelihood"
LIKELIHOOD_TEXT = "likelihood_text"
MC_MODES = ("generate", LIKELIHOOD)


def _scorer_of(model):
    fn = getattr(model, "score_options", None)
    if fn is None:
        raise InputError(
            f"--mc likelihood needs a model that can score continuations (a local model); {type(model).__name__} cannot"
        )
    return fn


def option_records(
    model,
    bench: Benchmark,
    samples: Sequence[EvalSample],
    *,
    vision: str = "enabled",
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict]:
    """One record per multiple-choice sample: ``{"idx", "letters": [logprob] | None, "texts": [logprob] | None}``
    (``model.score_options(requests, candidates)``, the eval adapter's)."""
    score = _scorer_of(model)
    items = [(s, bench.mc_options(s)) for s in samples]
    items = [(s, mc) for s, mc in items if mc is not None]
    bar = None
    if progress and items:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=f"{bench.name} (likelihood)", unit="sample", dynamic_ncols=True)
    out = []
    for k in range(0, len(items), max(1, batch_size)):
        chunk = items[k : k + batch_size]
        reqs = [
            GenerationRequest(s.prompt, s.load_images() if vision != "disabled" else [], origin=(bench.name, s.idx))
            for s, _ in chunk
        ]
        recs = [{"idx": s.idx, "letters": None, "texts": None} for s, _ in chunk]
        for field in ("letters", "texts"):
            sel = [j for j, (_, mc) in enumerate(chunk) if getattr(mc, field)]
            if not sel:
                continue
            scores = score([reqs[j] for j in sel], [list(getattr(chunk[j][1], field)) for j in sel])
            for j, row in zip(sel, scores):
                recs[j][field] = [round(float(x), 5) for x in row]
        out += recs
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda k: (values[k], -k))


def choice_predictions(bench: Benchmark, samples: Sequence[EvalSample], records: Sequence[dict]) -> dict:
    """``{reading: {idx: reply}}``: each sample's most likely option as a reply its benchmark reads as that
    option. ``likelihood`` uses the letters when the prompt asks for them, else the texts; ``likelihood_text`` (only
    when both exist) the texts."""
    by_idx = {str(s.idx): s for s in samples}
    out: dict = {LIKELIHOOD: {}, LIKELIHOOD_TEXT: {}}
    for r in records:
        s = by_idx[str(r["idx"])]
        mc = bench.mc_options(s)
        if r["letters"] is not None:
            out[LIKELIHOOD][s.idx] = mc.prediction(_argmax(r["letters"]))
            if r["texts"] is not None:
                out[LIKELIHOOD_TEXT][s.idx] = mc.prediction(_argmax(r["texts"]))
        elif r["texts"] is not None:
            out[LIKELIHOOD][s.idx] = mc.prediction(_argmax(r["texts"]))
    return {k: v for k, v in out.items() if v}


def score_choices(bench: Benchmark, samples: Sequence[EvalSample], predictions: dict) -> dict:
    """``{reading: metrics}``: the benchmark's official score of each reading over the samples it answered, every
    metric renamed with the reading's suffix."""
    out = {}
    for reading, preds in predictions.items():
        scored = [s for s in samples if s.idx in preds]
        out[reading] = label_metrics(bench.score(scored, preds), reading)
    return out


def run_likelihood(
    model,
    benches: Sequence[Benchmark],
    data_root: str | None,
    run_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    vision: str = "enabled",
    limit: int | None = None,
    progress: bool = True,
    samples_by_bench: dict | None = None,
) -> dict:
    """Score every benchmark's options and write the files above; returns ``{bench: {reading: metrics}}``."""
    run_dir = Path(run_dir)
    results = {}
    for bench in benches:
        if samples_by_bench and bench.name in samples_by_bench:
            samples = list(samples_by_bench[bench.name])
        else:
            samples = bench.load(str(Path(data_root) / bench.name) if data_root else None)
        if limit:
            samples = samples[:limit]
        t0 = time.perf_counter()
        fed = condition_samples(samples, vision)
        records = option_records(model, bench, fed, vision=vision, batch_size=batch_size, progress=progress)
        bench_dir = run_dir / bench.name
        bench_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(bench_dir / "likelihood.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        metrics = score_choices(bench, samples, choice_predictions(bench, samples, records))
        seconds = round(time.perf_counter() - t0, 3)
        for reading, m in metrics.items():
            atomic_write_json(
                bench_dir / f"metrics.{reading}.json",
                {
                    "benchmark": bench.name,
                    "primary_metric": f"{bench.primary_metric}_{reading}",
                    "scorer": reading,
                    "metrics": m,
                    "vision": vision,
                    "n_scored": len(records),
                    "seconds": seconds,
                },
            )
        results[bench.name] = metrics
    if not (run_dir / "run.json").exists():  # so that `eval report` can label a likelihood-only run
        atomic_write_json(run_dir / "run.json", {"model": getattr(model, "name", "model"), "vision": vision})
    return results
