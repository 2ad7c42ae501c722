"""What do the grounded visual tokens say? Nearest-word decoding of every cell of held-out test scenes.

For each cell of a test scene's query grid with a target (:func:`cambrian.data.scenes.grounding.scene_grounding`),
the cell's visual token is compared with the LLM's input embeddings of the scene world's colour words, shape words
and the background word: an object cell is right on colour when its nearest colour word is the object's colour
(likewise shape), a background cell is right when the background word is nearer than every colour and shape word.
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
) -> dict:
    """``{"scenes", "object_cells", "background_cells", "colour", "shape", "background"}`` (accuracies in [0, 1])."""
    from PIL import Image

    from ..data.grounding import WordIds
    from ..data.scenes.grounding import scene_grounding
    from ..data.scenes.render import read_scenes
    from ..models.grounding import cell_distances, connector_geometry, nearest

    geo = connector_geometry(model.connector)
    side = geo["side"]
    words = WordIds(model.tokenizer)
    first = lambda w: words(w)[0]  # noqa: E731
    vocab = list(colors) + list(shapes) + [background]
    cand = torch.tensor([first(w) for w in vocab])
    E = model.llm.get_input_embeddings().weight
    sd = Path(scene_dir)
    hits = {"colour": 0, "shape": 0, "background": 0}
    n_obj = n_bg = 0
    scenes = read_scenes(sd)[:max_scenes]
    for sc in scenes:
        g = scene_grounding(sd, sc, side)
        with Image.open(sd / sc["image"]) as im:
            px, sizes = model.encode_images([im.convert("RGB")])
        vis = model.visual_tokens(model.image_features(px), sizes)
        (dist,) = cell_distances(vis, sizes, side, E, cand, unpad=geo["unpad"], newline=geo["newline"])
        nc, ns = len(colors), len(shapes)
        grid, col, shp = nearest(dist, side).flatten(), dist[:, :nc].argmin(-1), dist[:, nc : nc + ns].argmin(-1)
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
    return {
        "scenes": len(scenes),
        "object_cells": n_obj,
        "background_cells": n_bg,
        "colour": hits["colour"] / max(1, n_obj),
        "shape": hits["shape"] / max(1, n_obj),
        "background": hits["background"] / max(1, n_bg),
    }
