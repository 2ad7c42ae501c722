"""The same recipe as a Hugging Face ``datasets`` pipeline, for users with more cores than one process uses.

Each source becomes an Arrow dataset of raw records (``Dataset.from_generator``); the per-record work runs in
``Dataset.map(..., num_proc=N)`` (scan: validity, dedup key, answer lengths) and, after the plan,
``Dataset.filter(..., num_proc=N)`` keeps the selected records and ``map`` transforms them. Every per-record
function and the selection are the ones of the streaming pipeline (:mod:`.records`, :func:`.pipeline.selection`),
so the output is byte-identical to ``curate()``.

Differences from the streaming pipeline: the driver holds the 64-bit keys of all valid records in memory
(8 bytes a record) and the Arrow copies of the sources live in a temp folder under OUT while it runs. Needs the
``datasets`` package (``pip install cambrian[data]``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...utils.io import temp_file_beside
from .dedup import duplicate_indices
from .pipeline import SourceTally, count_duplicates, log, plan, prepare_out, selection
from .recipe import CurateRecipe
from .records import RecordProcessor, iter_raw_records


def _records(path: str):
    for raw in iter_raw_records(path):
        yield {"raw": raw}


def _scan_batch(batch, indices, proc: RecordProcessor):
    reasons, keys, words = [], [], []
    for raw in batch["raw"]:
        r, k, w = proc.scan(raw)
        reasons.append(r)
        keys.append(k - (1 << 64) if k >= 1 << 63 else k)  # as int64 (Arrow writes Python ints as int64)
        words.append(w)
    return {"reason": reasons, "key": keys, "words": words, "ordinal": list(indices)}


def _keep_batch(batch, mask: np.ndarray):
    return [bool(mask[i]) for i in batch["ordinal"]]


def _transform_batch(batch, proc: RecordProcessor):
    lines, added, present, words = [], [], [], []
    for raw, ordinal in zip(batch["raw"], batch["ordinal"]):
        line, a, p, w = proc.transform(raw, ordinal)
        lines.append(line)
        added.append(a)
        present.append(p)
        words.append(w)
    return {"line": lines, "added": added, "present": present, "words": words}


def curate_with_datasets(
    recipe: CurateRecipe,
    out_dir: str | os.PathLike,
    *,
    num_proc: int | None = None,
    batch_size: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> dict:
    """``curate()`` through ``datasets.map`` / ``filter`` with ``num_proc`` worker processes."""
    try:
        import datasets
    except ImportError:
        raise UserError("the datasets pipeline needs the 'datasets' package: pip install 'cambrian[data]'") from None
    from datasets import Features, Sequence, Value

    out_dir = Path(out_dir)
    prepare_out(out_dir, overwrite)
    was_disabled = datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    t0 = time.perf_counter()
    procs = [RecordProcessor(s, recipe) for s in recipe.sources]
    tallies = [SourceTally(s.name, s.category) for s in recipe.sources]
    np_ = num_proc if num_proc and num_proc > 1 else None
    try:
        with tempfile.TemporaryDirectory(prefix=".hf-", dir=out_dir) as tmp:
            scanned = []
            all_keys, all_index, bases = [], [], []
            g = 0
            for src, proc, tally in zip(recipe.sources, procs, tallies):
                ds = datasets.Dataset.from_generator(
                    _records,
                    gen_kwargs={"path": str(src.path)},
                    cache_dir=tmp,
                    features=Features({"raw": Value("binary")}),
                )
                ds = ds.map(
                    _scan_batch,
                    batched=True,
                    batch_size=batch_size,
                    with_indices=True,
                    fn_kwargs={"proc": proc},
                    num_proc=np_,
                    desc=f"scan {src.name}",
                    features=Features(
                        {
                            "raw": Value("binary"),
                            "reason": Value("string"),
                            "key": Value("int64"),
                            "words": Sequence(Value("int32")),
                            "ordinal": Value("int64"),
                        }
                    ),
                )
                scanned.append(ds)
                bases.append(g)
                meta = ds.select_columns(["reason", "key", "words"])
                for b in meta.iter(batch_size=10_000):
                    for r, w in zip(b["reason"], b["words"]):
                        tally.add_scan(r, w)
                valid = np.asarray([r is None for r in meta["reason"]], dtype=bool)
                if recipe.dedup != "off":
                    all_keys.append(np.asarray(meta.with_format("numpy")["key"], dtype=np.int64).view(np.uint64)[valid])
                    all_index.append(np.nonzero(valid)[0].astype(np.uint64) + np.uint64(g))
                g += len(ds)
            t_scan = time.perf_counter() - t0
            if all_keys:
                dups = duplicate_indices(np.concatenate(all_keys), np.concatenate(all_index))
            else:
                dups = np.zeros(0, dtype=np.uint64)
            del all_keys, all_index
            count_duplicates(tallies, dups, bases, g)
            take = plan(recipe, tallies)
            t_plan = time.perf_counter() - t0 - t_scan
            dup_sorted = np.sort(dups)

            out_path = out_dir / "data.jsonl"
            tmp_out = temp_file_beside(out_path)
            try:
                with open(tmp_out, "wb", buffering=1 << 20) as out:
                    for src, proc, tally, ds, base in zip(recipe.sources, procs, tallies, scanned, bases):
                        k = take[src.name]
                        if not k:
                            continue
                        n = len(ds)
                        ok = np.asarray([r is None for r in ds["reason"]], dtype=bool)
                        lo, hi = np.searchsorted(dup_sorted, [base, base + n])
                        ok[(dup_sorted[lo:hi] - np.uint64(base)).astype(np.int64)] = False
                        avail = np.nonzero(ok)[0]
                        mask = np.zeros(n, dtype=bool)
                        flags = np.fromiter(
                            selection(len(avail), k, recipe.seed, src.name), dtype=bool, count=len(avail)
                        )
                        mask[avail[flags]] = True
                        kept = ds.filter(
                            _keep_batch,
                            batched=True,
                            batch_size=batch_size,
                            fn_kwargs={"mask": mask},
                            num_proc=np_,
                            desc=f"select {src.name}",
                        )
                        res = kept.map(
                            _transform_batch,
                            batched=True,
                            batch_size=batch_size,
                            fn_kwargs={"proc": proc},
                            num_proc=np_,
                            desc=f"write {src.name}",
                            remove_columns=kept.column_names,
                            features=Features(
                                {
                                    "line": Value("binary"),
                                    "added": Sequence(Value("string")),
                                    "present": Value("int64"),
                                    "words": Sequence(Value("int32")),
                                }
                            ),
                        )
                        for b in res.iter(batch_size=10_000):
                            for line, a, p, w in zip(b["line"], b["added"], b["present"], b["words"]):
                                out.write(line)
                                tally.add_output(a, p, w)
                        if tally.selected != k:  # pragma: no cover - the selection gives exactly k
                            raise UserError(f"{src.name}: wrote {tally.selected} of {k} planned records")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp_out, out_path)
            except BaseException:
                if tmp_out.exists():
                    tmp_out.unlink()
                raise
            del scanned
    finally:
        if not progress and not was_disabled:
            datasets.enable_progress_bars()
    t_total = time.perf_counter() - t0
    timing = {
        "scan_s": round(t_scan, 3),
        "plan_s": round(t_plan, 3),
        "write_s": round(t_total - t_scan - t_plan, 3),
        "total_s": round(t_total, 3),
        "engine": f"datasets {datasets.__version__}, num_proc={num_proc or 1}",
    }
    from .report import build_stats, write_report

    stats = build_stats(recipe, tallies, take, timing)
    write_report(stats, out_dir, plots=plots)
    log.info(
        f"curated {stats['totals']['records']:,} records -> {stats['totals']['selected']:,} with datasets "
        f"(num_proc={num_proc or 1}) in {t_total:.1f}s; {out_dir / 'data.jsonl'}"
    )
    return stats
