"""Shared plumbing for the benchmarks: reading the public schema from parquet / JSONL / JSON / CSV files,
lazy image decoding, the hub fallback, and the accuracy scorer most benchmarks use.

Local layout: ``--data-root DIR`` gives each benchmark ``DIR/<bench>``; that path may also be a single file.
Every data file under it whose name matches the benchmark's ``files`` patterns is read in sorted order
(parquet as exported by the Hugging Face hub, JSONL, a JSON list, or CSV). Image columns may hold the hub's
``{"bytes": ..., "path": ...}`` struct, raw bytes, or a path relative to the data file's folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..api import Benchmark, EvalSample, MCOptions

DATA_EXTS = (".parquet", ".jsonl", ".json", ".csv")
_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.):]\s+(.*\S)\s*$", re.M)
_OPTION_INLINE = re.compile(r"(?:^|[\s,])([A-Z]):\s*(.*?)(?=,\s*[A-Z]:|\n|$)")


def options_in_prompt(prompt: str) -> MCOptions | None:
    """The lettered options a prompt lists, one per line (``A. x`` / ``(A) x`` / ``A) x``) or inline (``A: x, B: y``,
    MMStar's form): the first run A, B, C, ... of at least two; None when there is none."""
    for pattern in (_OPTION_LINE, _OPTION_INLINE):
        letters, texts = [], []
        for letter_, text in pattern.findall(prompt or ""):
            if letter_ == "A":
                letters, texts = [], []
            if letter_ == chr(ord("A") + len(letters)):
                letters.append(letter_)
                texts.append(text.strip())
        if len(letters) >= 2:
            return MCOptions(tuple(texts), tuple(letters))
    return None


def read_table_file(path: Path) -> list[dict]:
    ext = path.suffix.lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if ext == ".jsonl":
        from ...utils.io import read_jsonl

        return list(read_jsonl(path))
    if ext == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"data": [...]} or {id: row}
            data = data.get("data", list(data.values()))
        return list(data)
    if ext == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    raise InputError(f"unsupported data file {path} (expected one of {DATA_EXTS})")


def find_files(root: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.exists():
        raise FileNotFoundError(f"benchmark data not found: {root}")
    out: list[Path] = []
    for pat in patterns:
        out += [p for p in sorted(root.glob(pat)) if p.is_file() and p.suffix.lower() in DATA_EXTS]
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    if not uniq:
        raise FileNotFoundError(f"no data files matching {list(patterns)} under {root}")
    return uniq


def open_image(value: Any, base: Path | None = None):
    """Decode one image cell (hub struct, bytes, path, PIL) to an RGB PIL image; None when empty."""
    from PIL import Image

    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            return open_image(value["bytes"], base)
        if value.get("path"):
            return open_image(str(value["path"]), base)
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(value))) as im:
            return im.convert("RGB")
    p = Path(str(value))
    if not p.is_absolute() and base is not None:
        p = base / p
    with Image.open(p) as im:
        return im.convert("RGB")


def lazy_image(value: Any, base: Path | None = None) -> Callable:
    def _load():
        return open_image(value, base)

    _load.raw = value  # for hashing without decoding (MMBench circular groups)
    return _load


def has_image(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return bool(value.get("bytes") or value.get("path"))
    if isinstance(value, str):
        return bool(value.strip())
    return True


def is_missing(v: Any) -> bool:
    """Empty cell: None, NaN, "" or the string "nan" (MMBench's convention)."""
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    return isinstance(v, str) and v.strip().lower() in ("", "nan", "none")


class TableBenchmark(Benchmark):
    """A benchmark read row by row from table files. Subclasses set ``files``/``hub_*`` and implement
    ``build_prompt(row)`` (the prompt builder), ``make_sample`` and ``is_correct``."""

    files: tuple[str, ...] = ("**/*.parquet", "**/*.jsonl", "**/*.json", "**/*.csv")
    hub_config: str | None = None
    hub_split: str = "test"
    item_metric: str = "accuracy"  # key under which score() reports the mean of the per-item scores
    multiple_choice: bool = False  # every sample lists lettered options in its prompt (``mc_options``)

    # --- loading -------------------------------------------------------------------------------------------
    def rows(self, path: str | None) -> list[tuple[dict, Path | None]]:
        if path is None:
            return [(r, None) for r in self.hub_rows()]
        return [(r, f.parent) for f in find_files(path, self.files) for r in read_table_file(f)]

    def hub_rows(self) -> list[dict]:
        if not self.hub_id:
            raise InputError(f"{self.name}: no local path given and no hub id known")
        try:
            import datasets  # optional, online only
        except ImportError as e:  # pragma: no cover
            raise RuntimeError(f"{self.name}: pass a local path (the `datasets` package is not installed)") from e
        ds = datasets.load_dataset(self.hub_id, self.hub_config, split=self.hub_split)
        return list(ds)

    def load(self, path: str | None) -> list[EvalSample]:
        out = []
        for i, (row, base) in enumerate(self.rows(path)):
            s = self.make_sample(i, row, base)
            if s is not None:
                out.append(s)
        return out

    def build_prompt(self, row: dict) -> str:
        raise NotImplementedError

    def make_sample(self, i: int, row: dict, base: Path | None) -> EvalSample | None:
        raise NotImplementedError

    def mc_options(self, sample: EvalSample) -> MCOptions | None:
        """The lettered options of the prompt (multiple-choice benchmarks, or samples marked ``meta["mc"]``)."""
        if self.multiple_choice or sample.meta.get("mc"):
            return options_in_prompt(sample.prompt)
        return None

    # --- scoring -------------------------------------------------------------------------------------------
    def is_correct(self, sample: EvalSample, extracted: Any) -> float:
        """1.0/0.0 (or a soft score in [0, 1]) for one sample."""
        return float(extracted is not None and str(extracted) == str(sample.answer).strip().lower())

    def item_scores(self, samples: Sequence[EvalSample], predictions: dict) -> list[float]:
        return [float(self.correct(s, self.answer(s, predictions.get(s.idx, "") or ""))) for s in samples]

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        scores = self.item_scores(samples, predictions)
        out = {
            self.item_metric: mean(scores),
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
        by = defaultdict(list)
        for s, v in zip(samples, scores):
            if s.meta.get("category") is not None:
                by[str(s.meta["category"])].append(v)
        if by:
            out["per_category"] = {k: mean(v) for k, v in sorted(by.items())}
        return out


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if len(xs) else 0.0
