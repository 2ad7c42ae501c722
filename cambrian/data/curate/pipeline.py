"""Streaming curation: recipe -> ``OUT/data.jsonl`` + ``stats.json`` / ``report.md`` / PNG charts.

Two passes over each source, memory flat in the number of records:

1. **scan**: parse every record, count bad ones by reason, compute its dedup key (conversation + image content
   digests, :mod:`.records`) and spill ``(key, index)`` to disk (:mod:`.dedup`); answer-length histogram.
2. **plan**: drop duplicates (first occurrence kept, in recipe order then file order), then
   :func:`cambrian.data.mixing.plan_mixture` (cap, then category ratios) gives ``take[s]`` per source.
3. **write**: re-read each source and keep a uniform random ``take[s]`` of its surviving records by selection
   sampling (Knuth's algorithm S: one random draw per record, exact count, O(1) memory, seeded per source), add
   response-format instructions and provenance, and write them in source order. A source stops being read once
   its quota is filled.

The output file appears only when complete (temp file + rename); a source file that changes between the passes is
an error.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InputError, UserError
from ...utils.io import temp_file_beside
from ...utils.log import get_logger
from ...utils.progress import progress_bar
from ..mixing import SourceSpec, plan_mixture
from .dedup import DigestSpool
from .recipe import CurateRecipe
from .records import ANSWER_EDGES, RecordProcessor, answer_bin, iter_raw_records

log = get_logger("data")
OUTPUT_FILES = ("data.jsonl", "stats.json", "report.md", "categories.png", "sources.png", "answer_length.png")


@dataclass
class SourceTally:
    name: str
    category: str
    records: int = 0  # records read, bad ones included
    bad: Counter = field(default_factory=Counter)
    duplicates: int = 0
    capped: int = 0
    selected: int = 0
    answers_in: list = field(default_factory=lambda: [0] * len(ANSWER_EDGES))
    answers_out: list = field(default_factory=lambda: [0] * len(ANSWER_EDGES))
    prompt_records: int = 0  # selected records given at least one instruction
    prompt_turns: Counter = field(default_factory=Counter)  # instruction name -> turns
    prompt_present: int = 0  # short-answer turns that already had an instruction

    @property
    def valid(self) -> int:
        return self.records - sum(self.bad.values())

    @property
    def available(self) -> int:
        return self.valid - self.duplicates

    def add_scan(self, reason: str | None, words: Iterable[int]) -> None:
        self.records += 1
        if reason is not None:
            self.bad[reason] += 1
            return
        hist = self.answers_in
        for w in words:
            hist[answer_bin(w)] += 1

    def add_output(self, added: list[str], present: int, words: Iterable[int]) -> None:
        self.selected += 1
        if added:
            self.prompt_records += 1
            self.prompt_turns.update(added)
        self.prompt_present += present
        hist = self.answers_out
        for w in words:
            hist[answer_bin(w)] += 1


def count_duplicates(tallies, dups: np.ndarray, bases: list[int], end: int) -> None:
    """Each source's number of duplicates: ``dups`` are global record indices, source k spans
    ``[bases[k], bases[k + 1])`` (the last one ends at ``end``)."""
    edges = np.asarray(bases[1:] + [end], dtype=np.uint64)
    per_src = np.bincount(np.searchsorted(edges, dups, side="right"), minlength=len(tallies))
    for t, d in zip(tallies, per_src.tolist()):
        t.duplicates = int(d)


def selection(n: int, k: int, seed: int, name: str) -> Iterator[bool]:
    """Algorithm S: ``n`` flags, exactly ``k`` True, every k-subset equally likely; seeded by (seed, source)."""
    if not 0 <= k <= n:
        raise InputError(f"cannot select {k} of {n}")
    rand = random.Random(f"cambrian-curate:{seed}:{name}").random
    need, left = k, n
    while left:
        take = need > 0 and rand() * left < need
        need -= take
        left -= 1
        yield take


def _fingerprint(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def plan(recipe: CurateRecipe, tallies: list[SourceTally]) -> dict[str, int]:
    """``take`` per source: the recipe's cap and ratios over the records left after dedup."""
    specs = {t.name: SourceSpec(t.available, t.category) for t in tallies}
    try:
        take = plan_mixture(specs, cap=recipe.cap, ratios=recipe.ratios, total=recipe.total)
    except ValueError as e:
        raise UserError(f"{recipe.path or 'recipe'}: {e}") from None
    for t in tallies:
        t.capped = t.available if recipe.cap is None else min(t.available, recipe.cap)
    if not sum(take.values()):
        bad: Counter = Counter()
        for t in tallies:
            bad.update(t.bad)
        reasons = ", ".join(f"{r} {n}" for r, n in bad.most_common(4))
        raise UserError(
            f"{recipe.path or 'recipe'}: no record to write: {sum(t.records for t in tallies)} read, "
            f"{sum(bad.values())} bad{f' ({reasons})' if reasons else ''}, {sum(t.duplicates for t in tallies)} "
            "duplicates; nothing was written"
        )
    return take


# what a curation killed outright (kill -9, power loss) leaves in OUT: the output's temp file, the dedup spool, the
# datasets engine's cache
LEFTOVERS = (".data.jsonl.*.tmp", "cambrian-dedup-*", ".hf-*")


def prepare_out(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a previous curation unless ``overwrite``; remove what an interrupted one left."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [f for f in OUTPUT_FILES if (out_dir / f).exists()]
    if existing and not overwrite:
        raise UserError(f"{out_dir} already holds a curation ({', '.join(existing)}); pass --overwrite to replace it")
    left = [p for pattern in LEFTOVERS for p in out_dir.glob(pattern)]
    for p in left:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if left:
        log.warning(f"{out_dir}: removed {len(left)} temporary file(s) left by an interrupted curation")


def curate(
    recipe: CurateRecipe,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> dict:
    """Run the recipe; returns the stats dict (also written to ``OUT/stats.json``)."""
    out_dir = Path(out_dir)
    prepare_out(out_dir, overwrite)
    t0 = time.perf_counter()
    procs = [RecordProcessor(s, recipe) for s in recipe.sources]
    tallies = [SourceTally(s.name, s.category) for s in recipe.sources]
    prints = [_fingerprint(s.path) for s in recipe.sources]
    bad_index: list[int] = []
    bases = []
    g = 0
    with DigestSpool(out_dir) as spool:
        # ---- pass 1: scan ----------------------------------------------------------------------------
        for src, proc, tally in zip(recipe.sources, procs, tallies):
            bases.append(g)
            bar = _bar(progress, src.path.stat().st_size, f"scan {src.name}", "B")
            scan, add_scan, add_key = proc.scan, tally.add_scan, spool.add
            dedup = recipe.dedup != "off"
            nbytes = 0
            for raw in iter_raw_records(src.path):
                reason, key, words = scan(raw)
                add_scan(reason, words)
                if reason is not None:
                    bad_index.append(g)
                elif dedup:
                    add_key(key, g)
                g += 1
                if bar is not None:
                    nbytes += len(raw) if raw is not None else 0
                    if g & 4095 == 0:
                        bar.update(nbytes)
                        nbytes = 0
            if bar is not None:
                bar.update(nbytes)
                bar.close()
        t_scan = time.perf_counter() - t0
        dups = spool.duplicates() if recipe.dedup != "off" else np.zeros(0, dtype=np.uint64)
    count_duplicates(tallies, dups, bases, g)
    take = plan(recipe, tallies)
    t_plan = time.perf_counter() - t0 - t_scan
    skip = np.union1d(np.asarray(bad_index, dtype=np.uint64), dups)
    del bad_index, dups

    # ---- pass 2: select, transform, write --------------------------------------------------------------
    out_path = out_dir / "data.jsonl"
    tmp = temp_file_beside(out_path)
    try:
        with open(tmp, "wb", buffering=1 << 20) as out:
            write = out.write
            skip_it = iter(skip.tolist())
            next_skip = next(skip_it, None)
            g = 0
            for src, proc, tally, base in zip(recipe.sources, procs, tallies, bases):
                k = take[src.name]
                sel = selection(tally.available, k, recipe.seed, src.name)
                g = base
                bar = _bar(progress, k, f"write {src.name}", "rec")
                transform, add_output = proc.transform, tally.add_output
                if k:
                    for ordinal, raw in enumerate(iter_raw_records(src.path)):
                        if g == next_skip:
                            next_skip = next(skip_it, None)
                            g += 1
                            continue
                        g += 1
                        if next(sel):
                            line, added, present, words = transform(raw, ordinal)
                            write(line)
                            add_output(added, present, words)
                            if bar is not None:
                                bar.update(1)
                            if tally.selected == k:
                                break
                # skip pointers past this source's records (the loop may have stopped early)
                end = base + tally.records
                while next_skip is not None and next_skip < end:
                    next_skip = next(skip_it, None)
                if bar is not None:
                    bar.close()
                if tally.selected != k:
                    raise UserError(
                        f"{src.path}: changed during curation (read {tally.selected} of the {k} records planned)"
                    )
            out.flush()
            os.fsync(out.fileno())
        for src, fp in zip(recipe.sources, prints):
            if _fingerprint(src.path) != fp:
                raise UserError(f"{src.path}: changed during curation; run again")
        os.replace(tmp, out_path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    t_total = time.perf_counter() - t0
    timing = {
        "scan_s": round(t_scan, 3),
        "plan_s": round(t_plan, 3),
        "write_s": round(t_total - t_scan - t_plan, 3),
        "total_s": round(t_total, 3),
    }
    from .report import build_stats, write_report

    stats = build_stats(recipe, tallies, take, timing)
    write_report(stats, out_dir, plots=plots)
    n_in = sum(t.records for t in tallies)
    log.info(
        f"curated {n_in:,} records -> {stats['totals']['selected']:,} in {t_total:.1f}s "
        f"({n_in / max(t_total, 1e-9):,.0f} records/s); {out_dir / 'data.jsonl'}, images relative to "
        f"{stats['image_root']}"
    )
    return stats


def _bar(progress: bool, total: int, desc: str, unit: str):
    """A bar, or None without ``progress`` (the scan then skips its byte counting)."""
    return progress_bar(total=total, desc=desc, unit=unit, unit_scale=True, leave=False) if progress else None
