"""Grounding targets from rendered scenes: the engine knows every object's colour, shape and mask, so each cell of
any query grid gets the words of the object covering it ("red cube") or a background word ("floor")
(:func:`cambrian.data.grounding.cells_from_mask`). Records are LLaVA-style with a ``grounding`` field."""

from __future__ import annotations

import os
from pathlib import Path

from ..grounding import cells_from_mask
from .render import load_mask, read_scenes


def object_words(obj: dict, count: int | None = None) -> str:
    """ "red cube", or with ``count`` (objects of that shape in the scene) "red cube two"."""
    from .attributes import NUMBER_WORDS

    words = f"{obj['color']} {obj['shape']}"
    return words if count is None else f"{words} {NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else count}"


def scene_grounding(
    scene_dir: str | os.PathLike,
    scene: dict,
    grid: int,
    *,
    background: str = "floor",
    min_cover: float = 0.15,
    object_weight: float = 3.0,
    split_words: bool = False,
    count_words: bool = False,
    position_words: bool = False,
    position_of: str = "centre",
) -> dict:
    """``grounding`` targets of one scene record on a ``grid`` x ``grid`` query grid. ``count_words``: each object's
    cells also carry the number of objects of its shape ("red cube two"), so a count becomes a look-up.
    ``position_words``: each object's cells also carry a grid cell, its column as a number word and its row as an
    ordinal ("red cube two fifth"; :mod:`.positions`), so where an object is becomes a look-up. ``position_of``:
    which cell, ``"centre"`` the object's centre cell on all its cells (one value per object, which a cell can only
    infer from its neighbours), or ``"cell"`` each cell's own column and row (a constant per query slot; the
    object's cells then span its extent)."""
    from collections import Counter

    from .positions import check_grid, place_words
    from .positions import position_words as where

    if position_of not in ("centre", "cell"):
        raise ValueError(f"position_of must be 'centre' or 'cell', not {position_of!r}")
    if position_words:
        check_grid(grid)

    mask = load_mask(scene_dir, scene)
    shapes = Counter(o["shape"] for o in scene["objects"])
    words = {}
    for o in scene["objects"]:
        w = object_words(o, shapes[o["shape"]] if count_words else None)
        if position_words and position_of == "centre":
            w += " " + where(o, scene["camera"]["width"], scene["camera"]["height"], grid)
        words[int(o["instance_id"])] = w
    out = cells_from_mask(
        mask,
        words,
        grid,
        background=background,
        min_cover=min_cover,
        object_weight=object_weight,
        split_words=split_words,
    )
    if position_words and position_of == "cell":
        out["cells"] = [
            f"{c} {place_words(i % grid, i // grid)}" if c not in ("", background) else c
            for i, c in enumerate(out["cells"])
        ]
    return out


def scene_grounding_records(scene_dir: str | os.PathLike, grid: int, **kwargs) -> list[dict]:
    """One record per scene: ``{"id", "image" (absolute path), "grounding"}``."""
    sd = Path(scene_dir).resolve()
    return [
        {
            "id": f"ground-{s['scene_id']}",
            "image": str(sd / s["image"]),
            "grounding": scene_grounding(sd, s, grid, **kwargs),
        }
        for s in read_scenes(sd)
    ]
