"""Batched, resumable, shardable benchmark runs.

Run directory layout::

    RUN_DIR/run.json                         model, vision setting, batch size, per-benchmark timings
    RUN_DIR/<bench>/predictions.jsonl        {"idx": ..., "prediction": raw text} per sample
    RUN_DIR/<bench>/predictions.shard{i}of{n}.jsonl  (+ .done markers) when sharded; merged into the above
    RUN_DIR/<bench>/metrics.json             {"benchmark", "primary_metric", "metrics": {...}, ...} (official scorer)
    RUN_DIR/<bench>/metrics.lenient.json     the same with ``--scorer lenient`` (``*_lenient`` keys; not in the
                                             paper-style table)
    RUN_DIR/<bench>/run_identity.json        model (+ weights fingerprint), vision, benchmark + options,
                                             max_new_tokens and a fingerprint of the benchmark data
    RUN_DIR/<bench>/missing_images*.json     idx of the samples whose image could not be read (scored wrong)
    RUN_DIR/<bench>/predictions.constrained.jsonl, metrics.constrained.json
                                             ``constrained=True`` (``--constrained``): every multiple-choice answer
                                             generated under a grammar allowing only its options (``mc_options``:
                                             the letters, or the texts the prompt asks for); metrics ``*_constrained``,
                                             apart from the paper-style table like the lenient scorer's

- Resume: predictions are appended and flushed one line per sample; a rerun skips the idx already present (a
  torn last line from a kill is dropped first). Only a rerun of the same run resumes: a run directory (run.json)
  and each benchmark directory (run_identity.json) record what produced them, and a rerun with another model,
  weights, vision setting, options or data is refused (``RunMismatch``) unless ``overwrite=True``, which
  replaces that benchmark's outputs.
- A sample whose image cannot be read (missing / corrupt file) is skipped, not fatal: it gets no prediction, is
  scored wrong, and is counted as ``missing_images`` in the metrics (retried by a rerun).
- Batching: pending samples are sorted by (number of images, prompt length) so batches hold similar lengths,
  then answers are written keyed by idx — the answers equal batch size 1 because the model contract is
  per-request (tested with a deterministic fake model).
- Sharding: contiguous ranges of ``ceil(n / shards)`` samples (the official chunking); ``--shard i/n`` or the
  torchrun environment (``RANK`` / ``WORLD_SIZE``). Shard 0 waits for the others' ``.done`` markers and merges;
  ``merge_shards`` can also be called on its own (``cambrian eval merge``).
- ``vision="disabled"``: the paper's vision-disabled setting — the same prompts with no image at all;
  ``vision="other"``: each question with the image of a question about another scene (``cambrian.eval.conditions``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..utils.io import append_jsonl, atomic_write_json, repair_jsonl
from ..utils.log import get_logger
from ..utils.progress import progress_bar
from .api import Benchmark, EvalSample, GenerationOptions, GenerationRequest, label_metrics
from .conditions import VISION_SETTINGS, condition_samples
from .identity import (
    IDENTITY_NAME,
    bench_identity,
    check_bench_identity,
    check_run_identity,
    data_fingerprint,
    identity_token,
    warn_foreign_benches,
)
from .predictions import (
    align_predictions,
    clear_bench_outputs,
    merge_shards,
    missing_images_path,
    predictions_path,
    read_missing_images,
    read_predictions,
    shard_range,
)

log = get_logger("eval")

SHARD_POLL_S = 1.0  # how often shard 0 looks for the other shards' .done markers
MERGE_TIMEOUT_S = 24 * 3600  # how long shard 0 waits for them
CONSTRAINED = "constrained"


def _batches(items: list, size: int):
    for k in range(0, len(items), size):
        yield items[k : k + size]


def generate_predictions(
    model,
    bench: Benchmark,
    samples: Sequence[EvalSample],
    path: Path,
    *,
    batch_size: int = 1,
    vision: str = "enabled",
    max_new_tokens: int | None = None,
    progress: bool = True,
    constrained: bool = False,
) -> dict:
    """Generate answers for the samples not yet in ``path`` and append them (``constrained``: each multiple-choice
    answer restricted to its options). Returns timing stats."""
    if vision not in VISION_SETTINGS:
        raise InputError(f"vision must be one of {VISION_SETTINGS}, got {vision!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(path)  # a torn last line from a kill
    done = {str(k) for k in read_predictions(path)}
    pending = [s for s in samples if str(s.idx) not in done]
    pending.sort(key=lambda s: (len(s.images), len(s.prompt)))
    options = GenerationOptions(max_new_tokens=max_new_tokens or bench.max_new_tokens)
    t0 = time.perf_counter()
    bar = progress_bar(total=len(pending), desc=bench.name, unit="sample", enabled=progress and bool(pending))
    missing: list[dict] = []
    with open(path, "a", encoding="utf-8") as f:
        for batch in _batches(pending, max(1, batch_size)):
            reqs, ready = [], []
            for s in batch:
                images = []
                if vision != "disabled":
                    try:
                        images = s.load_images()
                    except Exception as e:  # noqa: BLE001 - missing / unreadable image: skip this sample only
                        missing.append({"idx": s.idx, "error": f"{type(e).__name__}: {e}"[:300]})
                        continue
                reqs.append(
                    GenerationRequest(
                        prompt=s.prompt,
                        images=images,
                        choices=_choices(bench, s, constrained),
                        origin=(bench.name, s.idx),
                    )
                )
                ready.append(s)
            outs = model.generate(reqs, options) if reqs else []
            if len(outs) != len(ready):
                raise RuntimeError(f"model returned {len(outs)} answers for {len(ready)} requests")
            for s, o in zip(ready, outs):
                append_jsonl(f, {"idx": s.idx, "prediction": o})
            bar.update(len(batch))
    bar.close()
    record = missing_images_path(path)
    if missing:
        atomic_write_json(record, {"missing_images": missing})
    elif record.exists():
        record.unlink()
    dt = time.perf_counter() - t0
    done_now = len(pending) - len(missing)
    return {
        "generated": done_now,
        "resumed": len(samples) - len(pending),
        "missing_images": len(missing),
        "seconds": round(dt, 3),
        "samples_per_s": round(done_now / dt, 3) if dt > 0 and done_now else None,
    }


def _choices(bench: Benchmark, sample: EvalSample, constrained: bool) -> list[str] | None:
    """The replies a constrained answer may take: what the benchmark's scorer reads as each option."""
    mc = bench.mc_options(sample) if constrained else None
    return [mc.prediction(k) for k in range(len(mc))] if mc is not None else None


def metrics_path(bench_dir: Path, scorer: str = "official") -> Path:
    """``metrics.json`` for the official scorer, ``metrics.<scorer>.json`` for another one."""
    return Path(bench_dir) / ("metrics.json" if scorer == "official" else f"metrics.{scorer}.json")


def score_run(bench: Benchmark, samples: Sequence[EvalSample], bench_dir: Path, constrained: bool = False) -> dict:
    """Score ``bench_dir/predictions.jsonl`` into ``metrics_path(bench_dir, bench.scorer)`` (``constrained``: the
    constrained predictions, metrics ``*_constrained``). Samples without a prediction count as wrong; those whose
    image could not be read are reported as ``missing_images``."""
    path = bench_dir / ("predictions.constrained.jsonl" if constrained else "predictions.jsonl")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    raw = read_predictions(path)
    preds = align_predictions(samples, raw)
    unreadable = read_missing_images(bench_dir)
    n_missing_images = sum(1 for s in samples if s.idx not in preds and str(s.idx) in unreadable)
    metrics = bench.evaluate(samples, preds)
    scorer = getattr(bench, "scorer", "official")
    primary = bench.primary_metric
    if constrained:
        metrics = label_metrics(metrics, CONSTRAINED)
        scorer = CONSTRAINED if scorer == "official" else f"{scorer}_{CONSTRAINED}"
        primary = f"{primary}_{CONSTRAINED}"
    if n_missing_images:
        metrics["missing_images"] = n_missing_images
    atomic_write_json(
        metrics_path(bench_dir, scorer),
        {
            "benchmark": bench.name,
            "primary_metric": primary,
            "scorer": scorer,
            "metrics": metrics,
            "options": getattr(bench, "opts", {}),
            "n_predictions": len(preds),
            "missing_images": n_missing_images,
            "bad_prediction_lines": raw.bad_lines,
        },
    )
    return metrics


def env_shard() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) under torchrun, else None."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        return int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"])
    return None


def _update_run_json(
    run_dir: Path, info: dict, bench: str | None = None, stats: dict | None = None, replace_bench: bool = False
) -> None:
    path = run_dir / "run.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:  # unreadable (only reachable with --overwrite): start anew
        data = {}
    data.update({k: v for k, v in info.items() if v is not None})
    data.setdefault("benchmarks", {})
    if bench is not None:
        old = {} if replace_bench else data["benchmarks"].get(bench, {})
        data["benchmarks"][bench] = {**old, **(stats or {})}
    data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(path, data)


def run_benchmarks(
    model,
    benches: Sequence[Benchmark],
    data_root: str | None,
    run_dir: str | os.PathLike,
    *,
    batch_size: int = 1,
    vision: str = "enabled",
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
    merge_timeout_s: float = MERGE_TIMEOUT_S,
    samples_by_bench: dict | None = None,
    identity: dict | None = None,
    overwrite: bool = False,
    constrained: bool = False,
) -> dict:
    """Run each benchmark; returns {bench: metrics (or None for a non-zero shard)}.

    ``constrained``: multiple-choice answers generated under a grammar of their options, into
    ``predictions.constrained.jsonl`` / ``metrics.constrained.json`` (not sharded).

    ``data_root``: each benchmark reads ``data_root/<bench>`` (None = the hub id, online).
    ``samples_by_bench``: pre-loaded samples (tests); overrides ``data_root``.
    ``identity``: what the model is (``model_identity(spec)``; default ``{"model": model.name}``). Existing outputs
    of a different model / weights / vision / options / data raise ``RunMismatch`` unless ``overwrite``, which
    replaces the outputs of the benchmarks run now (other benchmarks' directories are left as they are)."""
    if vision not in VISION_SETTINGS:
        raise InputError(f"vision must be one of {VISION_SETTINGS}, got {vision!r}")
    run_dir = Path(run_dir)
    shard = shard if shard is not None else env_shard()
    if constrained and shard and shard[1] > 1:
        raise InputError("constrained runs are not sharded; run them without --shard / torchrun")
    label = getattr(model, "name", "model")
    model_ident = dict(identity) if identity else {"model": label}
    info = {
        "model": label,
        "vision": vision,
        "batch_size": batch_size,
        "data_root": str(data_root) if data_root else None,
        "limit": limit,
        "shards": shard[1] if shard else 1,
        "identity": {**model_ident, "vision": vision},
    }
    # refuse a mismatch before any work: the run as a whole, then every benchmark without its data fingerprint
    check_run_identity(run_dir, model_ident, vision, overwrite)
    if overwrite:
        warn_foreign_benches(run_dir, benches, model_ident, vision)
    else:
        for bench in benches:
            check_bench_identity(run_dir / bench.name, bench_identity(model_ident, vision, bench, max_new_tokens, None))
    results = {}
    for bench in benches:
        if samples_by_bench and bench.name in samples_by_bench:
            samples = samples_by_bench[bench.name]
        else:
            samples = bench.load(str(Path(data_root) / bench.name) if data_root else None)
        bench_dir = run_dir / bench.name
        ident = bench_identity(model_ident, vision, bench, max_new_tokens, data_fingerprint(samples))
        if overwrite:
            clear_bench_outputs(bench_dir, shard)
        else:
            check_bench_identity(bench_dir, ident)
        atomic_write_json(bench_dir / IDENTITY_NAME, {**ident, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        token = identity_token(ident)
        if limit:
            samples = samples[:limit]
        fed = condition_samples(samples, vision)
        mine = [fed[k] for k in shard_range(len(fed), *shard)] if shard and shard[1] > 1 else fed
        path = bench_dir / "predictions.constrained.jsonl" if constrained else predictions_path(bench_dir, shard)
        stats = generate_predictions(
            model,
            bench,
            mine,
            path,
            batch_size=batch_size,
            vision=vision,
            max_new_tokens=max_new_tokens,
            progress=progress,
            constrained=constrained,
        )
        if stats["missing_images"]:
            log.warning(
                f"{bench.name}: {stats['missing_images']} sample(s) with an unreadable image skipped (scored "
                f"wrong); see {missing_images_path(path)}"
            )
        if shard and shard[1] > 1:
            path.with_suffix(".done").write_text(token + "\n")
            if shard[0] != 0:
                results[bench.name] = None
                continue
            _wait_for_shards(bench_dir, shard[1], token, merge_timeout_s)
            merge_shards(bench_dir, samples, shard[1])
        elif not constrained:
            merge_shards(bench_dir, samples, count=0)  # rewrite in sample order: identical files for any batch size
        t0 = time.perf_counter()
        metrics = score_run(bench, samples, bench_dir, constrained=constrained)
        stats["score_seconds"] = round(time.perf_counter() - t0, 3)
        stats["n"] = len(samples)
        primary = bench.primary_metric + (f"_{CONSTRAINED}" if constrained else "")
        if constrained:  # beside the official run's figures in run.json
            stats = {f"{k}_{CONSTRAINED}" if k != "n" else k: v for k, v in stats.items()}
        stats[primary] = metrics.get(primary)
        _update_run_json(run_dir, info, bench.name, stats, replace_bench=overwrite)
        results[bench.name] = metrics
    if not shard or shard[0] == 0:
        _update_run_json(run_dir, info)
    return results


def _wait_for_shards(bench_dir: Path, count: int, token: str, timeout_s: float) -> None:
    """Shard 0: wait until every shard's ``.done`` marker of this run is there."""
    deadline = time.time() + timeout_s
    markers = [predictions_path(bench_dir, (k, count)).with_suffix(".done") for k in range(count)]
    while not all(_done(m, token) for m in markers):
        if time.time() > deadline:
            raise TimeoutError(f"{bench_dir.name}: shards did not finish within {timeout_s}s")
        time.sleep(SHARD_POLL_S)


def _done(marker: Path, token: str) -> bool:
    """A shard's .done marker written by this same run (not a stale one of an earlier run)."""
    try:
        return marker.read_text().strip() == token
    except OSError:
        return False
