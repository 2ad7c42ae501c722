"""A rendered split: ``images/<k>.png`` + ``items.jsonl``, and what the study reads from it.

An item (one image) is ``{"id", "image" (relative to the split folder), "width", "height", "questions":
[{"type", "question", "answer", "choices"}], "regions": [{"box": [x0, y0, x1, y1], "words": "..."}]}``.
``regions`` are what the generator drew, in drawing order (a later region covers an earlier one), in pixels;
``words`` is what a grounded visual token of that region should read (a sign's word, a digit, "red 7" for a bar).
``choices`` is the answer space of the question's type (its chance level is 1 / len(choices)).

From a split:

- :func:`grounding_records`: per-cell word targets for ``stage: ground`` (:func:`cells_from_regions`);
- :func:`qa_records`: stage-2 records, every question of an image packed into one multi-turn conversation;
- :func:`question_rows`: the benchmark's question list.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...prompts import SHORT
from ...utils.io import atomic_write_text, read_jsonl

ITEMS = "items.jsonl"


def write_split(
    out_dir: str | os.PathLike, n: int, seed: int, render: Callable, *, split: str = "train", **render_kwargs
) -> dict:
    """Render ``n`` items with ``render(rng, k, **render_kwargs) -> (PIL image, item)`` (``k``: the item's index,
    which the generators use to spread answers evenly) into ``out_dir``; the random
    stream depends on ``seed`` and ``split`` only, so a split is reproducible and train / test never share a draw.
    Returns ``{"items", "questions"}``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    salt = {"train": 1, "test": 2}.get(split, 3)
    rng = np.random.default_rng([seed, salt, 41])
    lines, n_q = [], 0
    for k in range(n):
        image, item = render(rng, k, **render_kwargs)
        name = f"images/{split}-{k:05d}.png"
        image.save(out / name, compress_level=1)
        item = {"id": f"{split}-{k:05d}", "image": name, "width": image.width, "height": image.height, **item}
        n_q += len(item["questions"])
        lines.append(json.dumps(item) + "\n")
    atomic_write_text(out / ITEMS, "".join(lines))
    return {"items": n, "questions": n_q}


def read_items(split_dir: str | os.PathLike) -> list[dict]:
    f = Path(split_dir) / ITEMS
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found (a synthetic split written by write_split)")
    return list(read_jsonl(f))


def cells_from_regions(
    item: dict,
    grid: int,
    *,
    background: str = "background",
    min_cover: float = 0.2,
    object_weight: float = 3.0,
) -> dict:
    """Per-cell ``grounding`` targets (the ``{"grid", "cells", "weights"}`` form of :mod:`cambrian.data.grounding`)
    of a square item: a cell reads the words of the *top-most* region (the last drawn) that covers at least
    ``min_cover`` of it (weight ``object_weight``), else ``background`` (weight 1). Top-most rather than largest:
    a digit covers less of a cell than the sign it is printed on, and the digit is what the cell shows."""
    h, w = int(item["height"]), int(item["width"])
    if h != w:
        raise InputError(f"item {item.get('id')}: synthetic items are square, got {w}x{h}")
    edges = np.linspace(0, w, grid + 1)
    cells, weights = [], []
    for u in range(grid):
        for v in range(grid):
            cy0, cy1, cx0, cx1 = edges[u], edges[u + 1], edges[v], edges[v + 1]
            area = (cy1 - cy0) * (cx1 - cx0)
            word = None
            for r in reversed(item["regions"]):
                x0, y0, x1, y1 = r["box"]
                ix = max(0.0, min(x1, cx1) - max(x0, cx0))
                iy = max(0.0, min(y1, cy1) - max(y0, cy0))
                if ix * iy >= min_cover * area:
                    word = str(r["words"])
                    break
            cells.append(word if word is not None else background)
            weights.append(float(object_weight) if word is not None else 1.0)
    return {"grid": grid, "cells": cells, "weights": weights}


def grounding_records(
    split_dir: str | os.PathLike, grid: int, *, background: str = "background", prefix: str = "synth"
) -> list[dict]:
    """One ``grounding`` record per item (absolute image paths; :func:`cells_from_regions`)."""
    sd = Path(split_dir).resolve()
    out = []
    for it in read_items(sd):
        cells = cells_from_regions(it, grid, background=background)
        out.append({"id": f"ground-{prefix}-{it['id']}", "image": str(sd / it["image"]), "grounding": cells})
    return out


def qa_records(
    split_dir: str | os.PathLike, *, seed: int = 0, max_turns: int = 6, prefix: str = "synth"
) -> tuple[list[dict], dict]:
    """Stage-2 records: the questions of one image in one conversation (shuffled, at most ``max_turns``), short
    answers after the single-word instruction. Returns (records, answers per question type)."""
    sd = Path(split_dir).resolve()
    rng = np.random.default_rng([seed, 43])
    records, counts = [], defaultdict(int)
    for it in read_items(sd):
        qs = [it["questions"][i] for i in rng.permutation(len(it["questions"]))][:max_turns]
        conv = []
        for t, q in enumerate(qs):
            conv += [
                {"from": "human", "value": ("<image>\n" if t == 0 else "") + f"{q['question']}\n{SHORT}"},
                {"from": "gpt", "value": str(q["answer"])},
            ]
            counts[f"{prefix}_{q['type']}"] += 1
        if conv:
            records.append({"id": f"{prefix}-{it['id']}", "image": str(sd / it["image"]), "conversations": conv})
    return records, dict(counts)


def question_rows(split_dir: str | os.PathLike) -> list[dict]:
    """Every question of the split as a benchmark row ``{"id", "image", "question", "answer", "type", "choices",
    "scene"}`` (``scene`` = the item id). The generators draw answers evenly (see each one), so no answer is
    favoured beyond sampling noise."""
    rows = []
    for it in read_items(split_dir):
        for q in it["questions"]:
            rows.append({"id": len(rows), **q, "image": it["image"], "scene": it["id"]})
    return rows
