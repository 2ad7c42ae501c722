"""The predictions files of a benchmark directory: ``predictions.jsonl`` (``{"idx", "prediction"}`` per line,
appended and flushed one sample at a time, so a killed run resumes), its shards
``predictions.shard{i}of{n}.jsonl`` (+ ``.done`` markers) merged into it, and ``missing_images*.json`` (samples
whose image could not be read)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..utils.io import atomic_write_text
from .api import EvalSample


def shard_range(n: int, index: int, count: int) -> range:
    if not 0 <= index < count:
        raise InputError(f"shard index {index} out of range for {count} shards")
    size = math.ceil(n / count) if n else 0
    return range(min(n, index * size), min(n, (index + 1) * size))


def predictions_path(bench_dir: Path, shard: tuple[int, int] | None = None) -> Path:
    if shard is None or shard[1] == 1:
        return bench_dir / "predictions.jsonl"
    return bench_dir / f"predictions.shard{shard[0]}of{shard[1]}.jsonl"


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
    out = bench_dir / "predictions.jsonl"
    atomic_write_text(out, "\n".join(lines) + ("\n" if lines else ""))
    return out


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
