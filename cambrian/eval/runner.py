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

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..utils.io import append_jsonl, atomic_write_json
from ..utils.log import get_logger
from .api import Benchmark, EvalSample, GenerationOptions, GenerationRequest
from .conditions import VISION_SETTINGS, condition_samples

log = get_logger("eval")


# --- predictions files ---------------------------------------------------------------------------------------
def shard_range(n: int, index: int, count: int) -> range:
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} out of range for {count} shards")
    size = math.ceil(n / count) if n else 0
    return range(min(n, index * size), min(n, (index + 1) * size))


def predictions_path(bench_dir: Path, shard: tuple[int, int] | None = None) -> Path:
    if shard is None or shard[1] == 1:
        return bench_dir / "predictions.jsonl"
    return bench_dir / f"predictions.shard{shard[0]}of{shard[1]}.jsonl"


def repair_jsonl(path: Path) -> None:
    """Drop a torn last line (no trailing newline or invalid JSON) left by a killed writer."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data:
        return
    keep = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
    lines = keep.splitlines(keepends=True)
    while lines:
        try:
            json.loads(lines[-1])
            break
        except ValueError:
            lines.pop()
    keep = b"".join(lines)
    if keep != data:
        with open(path, "wb") as f:
            f.write(keep)


class PredictionsFile(dict):
    """idx -> prediction text, plus ``lines`` (non-empty lines read) and ``bad_lines`` / ``first_bad`` (line
    number) for lines that are not a JSON object with an ``idx``."""

    lines: int = 0
    good_lines: int = 0
    bad_lines: int = 0
    first_bad: int | None = None


def read_predictions(path: str | os.PathLike) -> PredictionsFile:
    """idx -> prediction text, tolerant to a torn last line and to lines that are not prediction objects (both
    counted in ``bad_lines``); later lines win. A missing file gives an empty result (resume starts from zero);
    callers that need the file check it themselves."""
    path = Path(path)
    out = PredictionsFile()
    if not path.exists():
        return out
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        out.lines += 1
        try:
            rec = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON, not UTF-8 (counted, not fatal), nested too deep
            rec = None
        if not isinstance(rec, dict) or "idx" not in rec or isinstance(rec["idx"], (dict, list)):
            out.bad_lines += 1
            out.first_bad = out.first_bad or lineno
            continue
        out.good_lines += 1
        pred = rec.get("prediction", "")
        out[rec["idx"]] = pred if isinstance(pred, str) else ("" if pred is None else str(pred))
    return out


def align_predictions(samples: Sequence[EvalSample], preds: dict) -> dict:
    """Re-key predictions by the samples' own idx objects (JSON may turn 3 into "3" in hand-made files)."""
    by_str = {str(k): v for k, v in preds.items()}
    return {s.idx: by_str[str(s.idx)] for s in samples if str(s.idx) in by_str}


# --- run identity --------------------------------------------------------------------------------------------
IDENTITY_NAME = "run_identity.json"


class RunMismatch(ValueError):
    """The output directory holds results of a different run (model, weights, vision, options or data)."""


def model_identity(spec: str) -> dict:
    """What a ``--model`` argument names: the spec (an absolute path for a checkpoint dir or config file) and, for
    files on disk, a fingerprint of their size and modification time (the weights changed = another model)."""
    p = Path(spec)
    if p.is_dir():
        files = [p / n for n in ("model.safetensors", "config.json", "tokenizer.json", "toy_config.json")]
        files += sorted(f for f in p.glob("*.safetensors") if f.name != "model.safetensors")
    elif p.is_file():
        files = [p]
    else:
        return {"model": spec}
    stats = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()}
    digest = hashlib.sha1(json.dumps(stats, sort_keys=True).encode()).hexdigest()[:16]
    return {"model": str(p.resolve()), "weights": digest}


def data_fingerprint(samples: Sequence[EvalSample]) -> str:
    """Hash of what the predictions depend on and are scored against: idx, prompt, answer, image count."""
    h = hashlib.sha1()
    for s in samples:
        h.update(json.dumps([str(s.idx), s.prompt, str(s.answer), len(s.images)], ensure_ascii=False).encode())
        h.update(b"\n")
    return f"{len(samples)}:{h.hexdigest()[:16]}"


def _describe(diff: dict) -> str:
    return "; ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in diff.items())


def _diff(old: dict, new: dict, keys) -> dict:
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def check_run_identity(
    run_dir: Path, model_ident: dict, vision: str, overwrite: bool, label: str | None = None
) -> None:
    """Refuse a run directory whose run.json names another model / weights / vision setting (unless overwrite).
    run.json of an older version (no identity) is compared by model label and vision."""
    path = run_dir / "run.json"
    if overwrite or not path.exists():
        return
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise RunMismatch(f"{path}: unreadable run.json; use --overwrite to start this run directory anew") from None
    want = {**model_ident, "vision": vision}
    if isinstance(info.get("identity"), dict):
        diff = _diff(info["identity"], want, sorted(set(info["identity"]) | set(want)))
    else:
        diff = _diff(
            {"model": info.get("model"), "vision": info.get("vision")},
            {"model": label, "vision": vision},
            ("model", "vision"),
        )
    if diff:
        raise RunMismatch(
            f"{run_dir} holds a different run ({_describe(diff)}); use another --out, or --overwrite "
            "to replace the outputs of the benchmarks run now"
        )


def _bench_identity(
    model_ident: dict, vision: str, bench: Benchmark, max_new_tokens: int | None, data: str | None
) -> dict:
    out = {
        **model_ident,
        "vision": vision,
        "benchmark": bench.name,
        "options": json.loads(json.dumps(getattr(bench, "opts", {}), default=str)),
        "max_new_tokens": int(max_new_tokens or bench.max_new_tokens),
    }
    if data is not None:
        out["data"] = data
    return out


def check_bench_identity(bench_dir: Path, ident: dict, label: str | None = None, run_info: dict | None = None) -> None:
    """Refuse to resume predictions in ``bench_dir`` made by a different run. ``ident`` without ``data`` compares
    everything else (a check before the data is loaded)."""
    path = bench_dir / IDENTITY_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        keys = [k for k in sorted(set(old) | set(ident)) if k != "created" and (k != "data" or "data" in ident)]
        diff = _diff(old, ident, keys)
    elif any(bench_dir.glob("predictions*.jsonl")):  # outputs of an older version: compare run.json's labels
        info = run_info or {}
        diff = _diff(
            {"model": info.get("model"), "vision": info.get("vision")},
            {"model": label, "vision": ident.get("vision")},
            ("model", "vision"),
        )
        if not info:
            diff = {"identity": ("unknown (no run.json)", ident.get("model"))}
    else:
        return
    if diff:
        raise RunMismatch(
            f"{bench_dir} holds predictions of a different run ({_describe(diff)}); use another --out, "
            "or --overwrite to replace this benchmark's outputs"
        )


def clear_bench_outputs(bench_dir: Path, shard: tuple[int, int] | None = None) -> None:
    """--overwrite: remove this benchmark's outputs (under sharding: this shard's files; shard 0 also the merged
    ones), so nothing of the previous run is resumed."""
    if not bench_dir.is_dir():
        return
    if shard and shard[1] > 1:
        mine = [
            predictions_path(bench_dir, shard),
            predictions_path(bench_dir, shard).with_suffix(".done"),
            bench_dir / f"missing_images.shard{shard[0]}of{shard[1]}.json",
        ]
        if shard[0] == 0:
            mine += [
                bench_dir / "predictions.jsonl",
                *bench_dir.glob("metrics*.json"),
                bench_dir / "missing_images.json",
            ]
    else:
        mine = [
            *bench_dir.glob("predictions*.jsonl"),
            *bench_dir.glob("predictions*.done"),
            *bench_dir.glob("missing_images*.json"),
            *bench_dir.glob("metrics*.json"),
        ]
    for f in mine:
        if f.is_file():
            f.unlink()


def _identity_token(ident: dict) -> str:
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


# --- running -------------------------------------------------------------------------------------------------
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
) -> dict:
    """Generate answers for the samples not yet in ``path`` and append them. Returns timing stats."""
    if vision not in VISION_SETTINGS:
        raise ValueError(f"vision must be one of {VISION_SETTINGS}, got {vision!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(path)
    done = {str(k) for k in read_predictions(path)}
    pending = [s for s in samples if str(s.idx) not in done]
    pending.sort(key=lambda s: (len(s.images), len(s.prompt)))
    options = GenerationOptions(max_new_tokens=max_new_tokens or bench.max_new_tokens)
    t0 = time.perf_counter()
    bar = None
    if progress and pending:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), desc=bench.name, unit="sample", dynamic_ncols=True)
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
                reqs.append(GenerationRequest(prompt=s.prompt, images=images, origin=(bench.name, s.idx)))
                ready.append(s)
            outs = model.generate(reqs, options) if reqs else []
            if len(outs) != len(ready):
                raise RuntimeError(f"model returned {len(outs)} answers for {len(ready)} requests")
            for s, o in zip(ready, outs):
                append_jsonl(f, {"idx": s.idx, "prediction": o})
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
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


def missing_images_path(predictions: Path) -> Path:
    """predictions[.shard{i}of{n}].jsonl -> missing_images[.shard{i}of{n}].json"""
    return predictions.with_name(predictions.name.replace("predictions", "missing_images", 1)).with_suffix(".json")


def read_missing_images(bench_dir: Path) -> set[str]:
    """str(idx) of the samples recorded as having an unreadable image (every shard's record)."""
    out: set[str] = set()
    for f in sorted(Path(bench_dir).glob("missing_images*.json")):
        try:
            out |= {str(r["idx"]) for r in json.loads(f.read_text(encoding="utf-8")).get("missing_images", [])}
        except (ValueError, AttributeError, KeyError, TypeError):
            continue
    return out


def metrics_path(bench_dir: Path, scorer: str = "official") -> Path:
    """``metrics.json`` for the official scorer, ``metrics.<scorer>.json`` for another one."""
    return Path(bench_dir) / ("metrics.json" if scorer == "official" else f"metrics.{scorer}.json")


def score_run(bench: Benchmark, samples: Sequence[EvalSample], bench_dir: Path) -> dict:
    """Score ``bench_dir/predictions.jsonl`` into ``metrics_path(bench_dir, bench.scorer)``. Samples without a
    prediction count as wrong; those whose image could not be read are reported as ``missing_images``."""
    path = bench_dir / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    raw = read_predictions(path)
    preds = align_predictions(samples, raw)
    unreadable = read_missing_images(bench_dir)
    n_missing_images = sum(1 for s in samples if s.idx not in preds and str(s.idx) in unreadable)
    metrics = bench.score(samples, preds)
    if n_missing_images:
        metrics["missing_images"] = n_missing_images
    scorer = getattr(bench, "scorer", "official")
    atomic_write_json(
        metrics_path(bench_dir, scorer),
        {
            "benchmark": bench.name,
            "primary_metric": bench.primary_metric,
            "scorer": scorer,
            "metrics": metrics,
            "options": getattr(bench, "opts", {}),
            "n_predictions": len(preds),
            "missing_images": n_missing_images,
            "bad_prediction_lines": raw.bad_lines,
        },
    )
    return metrics


def merge_shards(bench_dir: Path, samples: Sequence[EvalSample] | None = None, count: int | None = None) -> Path:
    """Concatenate predictions.shard*of{count}.jsonl into predictions.jsonl (in sample order when samples are
    given, else shard order), deduplicated by idx."""
    bench_dir = Path(bench_dir)
    files = sorted(bench_dir.glob("predictions.shard*of*.jsonl"))
    if count is not None:  # count=0: no shard files, only reorder predictions.jsonl
        files = [p for p in files if p.name.endswith(f"of{count}.jsonl")]
    merged: dict = {}
    for p in sorted(files, key=lambda p: int(p.name.split("shard")[1].split("of")[0])):
        merged.update({str(k): (k, v) for k, v in read_predictions(p).items()})
    for k, v in read_predictions(bench_dir / "predictions.jsonl").items():  # an earlier unsharded partial run
        merged.setdefault(str(k), (k, v))
    order = [str(s.idx) for s in samples] if samples is not None else list(merged)
    lines = [
        json.dumps({"idx": merged[k][0], "prediction": merged[k][1]}, ensure_ascii=False) for k in order if k in merged
    ]
    from ..utils.io import atomic_write_text

    out = bench_dir / "predictions.jsonl"
    atomic_write_text(out, "\n".join(lines) + ("\n" if lines else ""))
    return out


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
    merge_timeout_s: float = 24 * 3600,
    samples_by_bench: dict | None = None,
    identity: dict | None = None,
    overwrite: bool = False,
) -> dict:
    """Run each benchmark; returns {bench: metrics (or None for a non-zero shard)}.

    ``data_root``: each benchmark reads ``data_root/<bench>`` (None = the hub id, online).
    ``samples_by_bench``: pre-loaded samples (tests); overrides ``data_root``.
    ``identity``: what the model is (``model_identity(spec)``; default ``{"model": model.name}``). Existing outputs
    of a different model / weights / vision / options / data raise ``RunMismatch`` unless ``overwrite``, which
    replaces the outputs of the benchmarks run now (other benchmarks' directories are left as they are)."""
    if vision not in VISION_SETTINGS:
        raise ValueError(f"vision must be one of {VISION_SETTINGS}, got {vision!r}")
    run_dir = Path(run_dir)
    shard = shard if shard is not None else env_shard()
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
    check_run_identity(run_dir, model_ident, vision, overwrite, label)
    run_json = run_dir / "run.json"
    run_info = json.loads(run_json.read_text(encoding="utf-8")) if run_json.exists() else None
    if not overwrite:
        for bench in benches:
            check_bench_identity(
                run_dir / bench.name, _bench_identity(model_ident, vision, bench, max_new_tokens, None), label, run_info
            )
    if overwrite:
        _warn_foreign_benches(run_dir, benches, model_ident, vision)
    results = {}
    for bench in benches:
        if samples_by_bench and bench.name in samples_by_bench:
            samples = samples_by_bench[bench.name]
        else:
            samples = bench.load(str(Path(data_root) / bench.name) if data_root else None)
        bench_dir = run_dir / bench.name
        ident = _bench_identity(model_ident, vision, bench, max_new_tokens, data_fingerprint(samples))
        if overwrite:
            clear_bench_outputs(bench_dir, shard)
        else:
            check_bench_identity(bench_dir, ident, label, run_info)
        atomic_write_json(bench_dir / IDENTITY_NAME, {**ident, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        token = _identity_token(ident)
        if limit:
            samples = samples[:limit]
        fed = condition_samples(samples, vision)
        mine = [fed[k] for k in shard_range(len(fed), *shard)] if shard and shard[1] > 1 else fed
        path = predictions_path(bench_dir, shard)
        stats = generate_predictions(
            model,
            bench,
            mine,
            path,
            batch_size=batch_size,
            vision=vision,
            max_new_tokens=max_new_tokens,
            progress=progress,
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
            deadline = time.time() + merge_timeout_s
            while not all(
                _done(predictions_path(bench_dir, (k, shard[1])).with_suffix(".done"), token) for k in range(shard[1])
            ):
                if time.time() > deadline:
                    raise TimeoutError(f"{bench.name}: shards did not finish within {merge_timeout_s}s")
                time.sleep(1.0)
            merge_shards(bench_dir, samples, shard[1])
        else:
            merge_shards(bench_dir, samples, count=0)  # rewrite in sample order: identical files for any batch size
        t0 = time.perf_counter()
        metrics = score_run(bench, samples, bench_dir)
        stats["score_seconds"] = round(time.perf_counter() - t0, 3)
        stats["n"] = len(samples)
        stats[bench.primary_metric] = metrics.get(bench.primary_metric)
        _update_run_json(run_dir, info, bench.name, stats, replace_bench=overwrite)
        results[bench.name] = metrics
    if not shard or shard[0] == 0:
        _update_run_json(run_dir, info)
    return results


def precheck_run(
    run_dir: str | os.PathLike,
    benches: Sequence[Benchmark],
    identity: dict,
    vision: str,
    max_new_tokens: int | None = None,
    overwrite: bool = False,
) -> None:
    """The identity checks that need neither the model nor the data (the CLI runs them before loading a model);
    records of older versions are left to ``run_benchmarks``."""
    run_dir = Path(run_dir)
    if overwrite:
        return
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    if isinstance(info.get("identity"), dict):
        check_run_identity(run_dir, identity, vision, False)
    for b in benches:
        if (run_dir / b.name / IDENTITY_NAME).exists():
            check_bench_identity(run_dir / b.name, _bench_identity(identity, vision, b, max_new_tokens, None))


def _warn_foreign_benches(run_dir: Path, benches: Sequence[Benchmark], model_ident: dict, vision: str) -> None:
    names = {b.name for b in benches}
    want = {**model_ident, "vision": vision}
    foreign = []
    for f in sorted(run_dir.glob(f"*/{IDENTITY_NAME}")):
        if f.parent.name in names:
            continue
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if any(old.get(k) != v for k, v in want.items()):
            foreign.append(f.parent.name)
    if foreign:
        log.warning(
            f"{run_dir}: {', '.join(foreign)} still hold results of another model or vision setting; rerun "
            "them with --overwrite or remove them before `cambrian eval report`"
        )


def _done(marker: Path, token: str) -> bool:
    """A shard's .done marker written by this same run (not a stale one of an earlier run)."""
    try:
        return marker.read_text().strip() == token
    except OSError:
        return False
