"""Grounding data: per-cell word targets for the connector's query grid (``stage: ground``).

A LLaVA record (conversations optional) carries its targets in ``grounding``, in one of two forms:

- per cell: ``{"grid": G, "cells": [G*G strings, row-major], "weights": [G*G numbers] (optional, default 1)}``;
  a cell's string holds the words for what it shows ("red cube", "floor"); "" = no target. The cells describe
  the image letterboxed to a square (as the towers see it). A model whose grid side L differs from G takes, for
  its cell (u, v), the cell (u*G//L, v*G//L) (nearest).
- image level: ``{"words": "red circle"}``; the words are spread over the grid in contiguous runs of cells
  (row-major), word k taking cells ``[k*L*L//K, (k+1)*L*L//K)``.

:func:`cells_from_mask` builds the per-cell form from an instance mask (the scene engine's masks, or a
foreground mask) and words per instance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from .collator import stack_images
from .dataset import BadSample, EncodedDataset, ImagePipeline, open_images, selection_of
from .llava import LlavaSource


def cells_from_mask(
    mask: np.ndarray,
    words: dict[int, str],
    grid: int,
    *,
    background: str = "floor",
    min_cover: float = 0.15,
    object_weight: float = 3.0,
    split_words: bool = False,
) -> dict:
    """Per-cell targets from an instance mask ``[H, W]`` (0 = background, k = instance k; ``words[k]`` its words).

    The mask is letterboxed to a square like the towers' input (centred; padding has no target), then cut into
    ``grid`` x ``grid`` cells. A cell takes the words of the instance covering the largest share of it when that
    share is at least ``min_cover`` (weight ``object_weight``), else ``background`` (weight 1); a cell that is
    mostly letterbox padding has no target. ``split_words``: an object's cells take its words one at a time, in a
    checkerboard (cell (u, v) takes word (u + v) mod K), so that neighbouring tokens read like a phrase ("red",
    "cube") instead of each token holding the mean of both."""
    mask = np.asarray(mask)
    h, w = mask.shape
    s = max(h, w)
    sq = np.full((s, s), -1, dtype=np.int64)
    top, left = (s - h) // 2, (s - w) // 2
    sq[top : top + h, left : left + w] = mask
    edges = np.linspace(0, s, grid + 1).round().astype(int)
    cells, weights = [], []
    for u in range(grid):
        for v in range(grid):
            block = sq[edges[u] : edges[u + 1], edges[v] : edges[v + 1]]
            n = block.size
            if n == 0 or (block < 0).sum() * 2 > n:
                cells.append("")
                weights.append(0.0)
                continue
            ids, counts = np.unique(block[block > 0], return_counts=True)
            best = [(c, int(i)) for i, c in zip(ids, counts) if int(i) in words]
            if best and max(best)[0] >= min_cover * n:
                ws = words[max(best)[1]]
                if split_words:
                    parts = ws.split()
                    ws = parts[(u + v) % len(parts)]
                cells.append(ws)
                weights.append(float(object_weight))
            else:
                cells.append(background)
                weights.append(1.0)
    return {"grid": grid, "cells": cells, "weights": weights}


def resolve_cells(grounding: dict, side: int) -> tuple[list[str], list[float]]:
    """A record's ``grounding`` -> (words, weight) of each of the ``side*side`` cells of the model's grid."""
    if not isinstance(grounding, dict):
        raise InputError("grounding must be a mapping")
    n = side * side
    if "cells" in grounding:
        g = int(grounding.get("grid", 0))
        cells = grounding["cells"]
        if g <= 0 or not isinstance(cells, list) or len(cells) != g * g:
            raise InputError(
                f"grounding.cells must be a list of grid*grid strings (grid={g}, got "
                f"{len(cells) if isinstance(cells, list) else type(cells).__name__})"
            )
        weights = grounding.get("weights") or [1.0] * (g * g)
        if len(weights) != g * g:
            raise InputError(f"grounding.weights has {len(weights)} entries, expected {g * g}")
        src = [(u * g // side) * g + (v * g // side) for u in range(side) for v in range(side)]
        out_c = [str(cells[j] or "") for j in src]
        out_w = [float(weights[j]) if out_c[i] else 0.0 for i, j in enumerate(src)]
        return out_c, out_w
    if "words" in grounding:
        words = grounding["words"]
        words = words.split() if isinstance(words, str) else [str(x) for x in words]
        if not words:
            raise InputError("grounding.words is empty")
        k = len(words)
        return [words[min(k - 1, i * k // n)] for i in range(n)], [1.0] * n
    raise InputError("grounding needs 'cells' (with 'grid') or 'words'")


class WordIds:
    """Token ids of target words (``" " + word``, no special tokens), cached."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        out = []
        for word in text.split():
            if word not in self._cache:
                self._cache[word] = list(self.tokenizer.encode(" " + word, add_special_tokens=False))
            out += self._cache[word]
        return out


class GroundingDataset(EncodedDataset):
    """One sample per record with ``grounding`` and exactly one image: its features (or pixels) and per-cell target
    token ids / weights on the model's ``side`` x ``side`` grid. Bad records come back as ``{"bad": reason}``."""

    def __init__(
        self,
        sources: Sequence[LlavaSource],
        tokenizer,
        images: ImagePipeline,
        side: int,
        selection: np.ndarray | None = None,
    ):
        self.sources = list(sources)
        self.words = WordIds(tokenizer)
        self.images = images
        self.side = int(side)
        self.selection = selection_of(self.sources, selection)

    def __len__(self) -> int:
        return len(self.selection)

    @property
    def lengths(self) -> np.ndarray:
        return np.full(len(self), self.side * self.side, dtype=np.int64)  # every sample is one image

    def encode(self, i: int) -> dict:
        s, r = self.selection[i]
        src = self.sources[int(s)]
        try:
            rec = src[int(r)]
        except ValueError as e:
            raise BadSample("bad_record", str(e)) from None
        if "grounding" not in rec:
            raise BadSample("bad_record", f"record {rec.get('id', r)!r} has no 'grounding' targets")
        paths = src.image_paths(rec)
        if len(paths) != 1:
            raise BadSample("image_count_mismatch", f"grounding needs one image per record, got {len(paths)}")
        try:
            cells, weights = resolve_cells(rec["grounding"], self.side)
        except (ValueError, TypeError) as e:
            raise BadSample("bad_record", f"record {rec.get('id', r)!r}: {e}") from None
        ids = [self.words(c) if w > 0 else [] for c, w in zip(cells, weights)]
        width = max(1, max(len(x) for x in ids))
        tid = torch.full((len(ids), width), -1, dtype=torch.long)
        for c, x in enumerate(ids):
            tid[c, : len(x)] = torch.tensor(x, dtype=torch.long)
        pil = open_images(paths)
        out = {
            "grounding_ids": tid,
            "grounding_weights": torch.tensor(weights, dtype=torch.float32),
            "image_sizes": [pil[0].size],
            "index": i,
        }
        out.update(self.images.inputs(paths, pil))
        return out


class GroundingCollator:
    """Stacks grounding samples into the model's forward kwargs (``features`` / ``pixel_values``, ``image_sizes``,
    ``grounding``) plus the trainer's bookkeeping keys (``empty``, ``weight`` = sum of cell weights)."""

    def __init__(self, kind: str = "mse+words", scale: float = 100.0):
        self.kind, self.scale = kind, float(scale)

    def __call__(self, items: Sequence[dict]) -> dict:
        from collections import Counter

        from ..models.grounding import GroundingTargets

        good = [x for x in items if "bad" not in x]
        batch: dict = {
            "bad_counts": dict(Counter(x["bad"] for x in items if "bad" in x)),
            "num_samples": len(items),
            "indices": [x["index"] for x in good],
            "empty": not good,
            "num_tokens": 0,
        }
        if not good:
            return batch
        width = max(x["grounding_ids"].shape[1] for x in good)
        ids = torch.full((len(good), good[0]["grounding_ids"].shape[0], width), -1, dtype=torch.long)
        for b, x in enumerate(good):
            ids[b, :, : x["grounding_ids"].shape[1]] = x["grounding_ids"]
        weights = torch.stack([x["grounding_weights"] for x in good])
        batch["grounding"] = GroundingTargets(ids, weights, self.kind, self.scale)
        batch["weight"] = float(weights.sum())
        batch.update(stack_images(good))
        return batch
