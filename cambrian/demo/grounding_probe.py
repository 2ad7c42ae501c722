"""What do the grounded visual tokens say? Nearest-word decoding of every cell of held-out test scenes.

For each cell of a test scene's query grid with a target (:func:`cambrian.data.scenes.grounding.scene_grounding`),
the cell's visual token is compared with the LLM's input embeddings of the scene world's colour words, shape words
and the background word: an object cell is right on colour when its nearest colour word is the object's colour
(likewise shape), a background cell is right when the background word is nearer than every colour and shape word.
With ``positions`` (a model grounded with position words, :mod:`cambrian.data.scenes.positions`), an object cell is
also decoded among the column words and among the row words, exact and within one cell, against what it was
trained to say: the object's centre cell (``"centre"``) or its own cell (``"cell"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch


@torch.no_grad()
def grounding_probe(
    model,
    scene_dir: str | os.PathLike,
    colors: Sequence[str],
    shapes: Sequence[str],
    background: str = "floor",
    max_scenes: int = 40,
    positions: str | None = None,
) -> dict:
    """``{"scenes", "object_cells", "background_cells", "colour", "shape", "background"}`` (accuracies in [0, 1]);
    with ``positions`` (``"centre"`` or ``"cell"``) also ``"column"``, ``"row"``, ``"column_within_1"``, ``"row_within_1"``."""
    from PIL import Image

    from ..data.grounding import WordIds
    from ..data.scenes.grounding import scene_grounding
    from ..data.scenes.positions import COLUMN_WORDS, ROW_WORDS, grid_cell
    from ..data.scenes.render import read_scenes
    from ..models.grounding import cell_distances, connector_geometry, nearest

    if positions not in (None, "centre", "cell"):
        raise ValueError(f"positions must be None, 'centre' or 'cell', not {positions!r}")
    geo = connector_geometry(model.connector)
    side = geo["side"]
    words = WordIds(model.tokenizer)
    first = lambda w: words(w)[0]
    vocab = list(colors) + list(shapes) + [background]
    places = list(COLUMN_WORDS[:side]) + list(ROW_WORDS[:side]) if positions else []
    cand = torch.tensor([first(w) for w in vocab + places])
    E = model.llm.get_input_embeddings().weight
    sd = Path(scene_dir)
    hits = {"colour": 0, "shape": 0, "background": 0}
    if positions:
        hits.update({"column": 0, "row": 0, "column_within_1": 0, "row_within_1": 0})
    n_obj = n_bg = 0
    scenes = read_scenes(sd)[:max_scenes]
    for sc in scenes:
        g = scene_grounding(sd, sc, side)
        with Image.open(sd / sc["image"]) as im:
            px, sizes = model.encode_images([im.convert("RGB")])
        vis = model.visual_tokens(model.image_features(px), sizes)
        (dist,) = cell_distances(vis, sizes, side, E, cand, unpad=geo["unpad"], newline=geo["newline"])
        nc, ns, nv = len(colors), len(shapes), len(vocab)
        grid = nearest(dist[:, :nv], side).flatten()
        col, shp = dist[:, :nc].argmin(-1), dist[:, nc : nc + ns].argmin(-1)
        if positions:
            cam = sc["camera"]
            where = {o["category"]: grid_cell(o, cam["width"], cam["height"], side) for o in sc["objects"]}
        for c, (cell, w) in enumerate(zip(g["cells"], g["weights"])):
            if w <= 0 or int(grid[c]) < 0:
                continue
            if cell == background:
                n_bg += 1
                hits["background"] += int(vocab[int(grid[c])] == background)
            else:
                colour, shape = cell.split()
                n_obj += 1
                hits["colour"] += int(colors[int(col[c])] == colour)
                hits["shape"] += int(shapes[int(shp[c])] == shape)
                if positions:
                    # the object's centre cell (unique colour+shape pairs name one object here), or the cell itself
                    true = where[cell] if positions == "centre" else (c % side, c // side)
                    got = (int(dist[c, nv : nv + side].argmin()), int(dist[c, nv + side :].argmin()))
                    for k, name in enumerate(("column", "row")):
                        hits[name] += int(got[k] == true[k])
                        hits[f"{name}_within_1"] += int(abs(got[k] - true[k]) <= 1)
    out = {"scenes": len(scenes), "object_cells": n_obj, "background_cells": n_bg}
    return out | {k: v / max(1, n_bg if k == "background" else n_obj) for k, v in hits.items()}
