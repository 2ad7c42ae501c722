"""Is an object's place linearly readable from a demo run's grounded visual tokens? (issue 20's lookup hop)

For every object cell of the run's train scenes, the cell's visual token (the checkpoint's connector output) is fed to
a linear softmax classifier for the column and for the row, once with the object's centre cell as the label and once
with the cell's own place; each is scored on the test scenes' object cells (exact and within one cell). Nearest-word
decoding (results.json ``grounding_probe``) asks whether a token *says* the position word; this asks whether the
position is *there* for an LLM layer to read.

    python scripts/position_probe.py RUN_DIR [TRAIN_SCENES]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from PIL import Image

from cambrian.cli.chat import load_model
from cambrian.data.scenes.grounding import scene_grounding
from cambrian.data.scenes.positions import grid_cell
from cambrian.data.scenes.render import read_scenes
from cambrian.models.grounding import connector_geometry, grid_tokens


@torch.no_grad()
def object_cells(model, scene_dir: Path, limit: int, side: int, geo: dict):
    """(tokens [N, D], centre (column, row) [N, 2], own (column, row) [N, 2]) of the object cells."""
    xs, centre, own = [], [], []
    for sc in read_scenes(scene_dir)[:limit]:
        g = scene_grounding(scene_dir, sc, side)
        with Image.open(scene_dir / sc["image"]) as im:
            px, sizes = model.encode_images([im.convert("RGB")])
        vis = model.visual_tokens(model.image_features(px), sizes)
        ((tok, (top, bottom, left, right)),) = grid_tokens(vis, sizes, side, geo["unpad"], geo["newline"])
        cam = sc["camera"]
        where = {o["category"]: grid_cell(o, cam["width"], cam["height"], side) for o in sc["objects"]}
        for c, (name, w) in enumerate(zip(g["cells"], g["weights"])):
            row, col = divmod(c, side)
            if w <= 0 or name in ("", "floor") or not (top <= row < bottom and left <= col < right):
                continue
            xs.append(tok[row - top, col - left].float())
            centre.append(where[name])
            own.append((col, row))
    return torch.stack(xs), torch.tensor(centre), torch.tensor(own)


def linear_readout(xtr, ytr, xte, yte, classes: int, steps: int = 300) -> tuple[float, float]:
    """Accuracy (exact, within one) of a linear softmax classifier (Adam, weight decay 1e-3) on standardised tokens."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(xtr.shape[1], classes)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        p = lin(xte).argmax(-1)
    return float((p == yte).float().mean()), float(((p - yte).abs() <= 1).float().mean())


def main(argv: list[str]) -> dict:
    run = Path(argv[0])
    train_scenes = int(argv[1]) if len(argv) > 1 else 160
    model = load_model(str(run / "checkpoint"), "cpu").eval()
    geo = connector_geometry(model.connector)
    side = geo["side"]
    xtr, ctr, otr = object_cells(model, run / "data/scenes/train", train_scenes, side, geo)
    xte, cte, ote = object_cells(model, run / "data/scenes/test", 40, side, geo)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    out = {"train_cells": len(xtr), "test_cells": len(xte)}
    for label, ytr, yte in (("centre", ctr, cte), ("cell", otr, ote)):
        for k, axis in enumerate(("column", "row")):
            exact, within = linear_readout(xtr, ytr[:, k], xte, yte[:, k], side)
            out[f"{label}_{axis}"], out[f"{label}_{axis}_within_1"] = round(exact, 3), round(within, 3)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps(main(sys.argv[1:])))
