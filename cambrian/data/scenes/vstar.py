"""Scenes for synth-vstar: large renders (default 1024 x 1024) of a wide arena with one *small* target among larger
distractors, seen from far away, so the target is a few pixels once the image is shrunk to a tower's 224 px.

Scene ``i`` is built around its target (``numpy.random.default_rng([seed, crc32("vstar"), i])``; the output does
not depend on how many are rendered or in which order):

- even ``i``: a *colour* scene. The target's shape is the only one of its kind (no distractor shares it), so
  "What color is the sphere?" has one answer; its colour cycles through the palette.
- odd ``i``: a *shape* scene. The target's colour is the only one of its kind, for "What shape is the red object?";
  its shape cycles through the shapes.

The target is ``small`` (0.45 m), the distractors ``large`` (0.8 m). A scene whose target ends up hidden is drawn
again. Records (``scenes.jsonl``) follow ``render.py``'s (objects with their 2D ``bbox`` in COCO ``xywh`` pixels)
plus ``kind`` and ``target`` (the target's ``instance_id``).

Renders are cached under ``cambrian.paths.cache_dir("synth-vstar", <config hash>)`` one scene per file, so building a
benchmark again, or a larger one, renders only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from .engine import COLORS, SceneConfig, config_dict, place

VERSION = 1  # bump when the layout rules change (a new cache key)
SCENE = {
    "width": 1024,
    "height": 1024,
    "min_objects": 10,
    "max_objects": 14,
    "shapes": ("cube", "sphere", "cylinder"),
    "arena_radius": 4.5,
    "min_gap": 0.25,
    "cam_distance": (11.0, 12.5),
    "cam_elevation_deg": (45.0, 65.0),
    "fov_deg": (44.0, 50.0),
    "target_jitter": 0.3,
    "min_visible_pixels": 60,
    "camera_tries": 10,
    "layout_tries": 60,
}


def vstar_config(size: int = 1024) -> SceneConfig:
    return SceneConfig.from_dict({**SCENE, "width": int(size), "height": int(size)})


def scene_kind(index: int) -> str:
    return "color" if index % 2 == 0 else "shape"


def target_of(index: int, cfg: SceneConfig, seed: int) -> tuple[str, str]:
    """(colour, shape) of scene ``index``'s target: the asked attribute cycles through its values in a seeded order
    (balanced answers), the other one is drawn."""
    rng = np.random.default_rng([int(seed), zlib.crc32(b"vstar-target"), int(index)])
    colors, shapes = list(cfg.colors), list(cfg.shapes)
    order = np.random.default_rng([int(seed), zlib.crc32(b"vstar-order")])
    if scene_kind(index) == "color":
        perm = order.permutation(len(colors))
        return colors[int(perm[(index // 2) % len(colors)])], shapes[int(rng.integers(len(shapes)))]
    perm = order.permutation(len(shapes))
    return colors[int(rng.integers(len(colors)))], shapes[int(perm[(index // 2) % len(shapes)])]


def target_layout(kind: str, color: str, shape: str):
    """A ``layout(rng, cfg)`` for ``SceneRenderer.render``: the small target first, then large distractors that share
    neither its shape (colour scenes) nor its colour (shape scenes)."""

    def layout(rng, cfg: SceneConfig):
        objs = []
        place(rng, cfg, objs, shape, color, "small")
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        shapes = [s for s in cfg.shapes if kind != "color" or s != shape]
        colors = [c for c in cfg.colors if kind != "shape" or c != color]
        for _ in range(n):
            place(rng, cfg, objs, str(rng.choice(shapes)), str(rng.choice(colors)), "large")
        return objs

    return layout


def cache_key(cfg: SceneConfig, seed: int) -> str:
    blob = json.dumps({"config": config_dict(cfg), "seed": int(seed), "version": VERSION}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def render_scene(renderer, index: int, seed: int) -> tuple[dict, np.ndarray]:
    """(record, RGB array) of scene ``index``."""
    from .engine import scene_rng

    cfg = renderer.cfg
    kind = scene_kind(index)
    color, shape = target_of(index, cfg, seed)
    rng = scene_rng(seed, "vstar", index)
    for _ in range(20):
        sc = renderer.render(rng, layout=target_layout(kind, color, shape))
        small = [o for o in sc["objects"] if o["size"] == "small"]
        if len(small) == 1:
            break
    else:  # pragma: no cover - the target was hidden in every draw
        raise RuntimeError(f"synth-vstar scene {index}: the target stayed hidden in 20 layouts")
    sid = f"vstar_{index:06d}"
    rec = {
        "scene_id": sid,
        "index": index,
        "image": f"images/{sid}.png",
        "kind": kind,
        "target": small[0]["instance_id"],
        "camera": sc["camera"],
        "objects": [{k: v for k, v in o.items() if k != "box3d"} for o in sc["objects"]],
        "hidden": sc["hidden"],
    }
    return rec, sc["rgb"]


def render_vstar_scenes(n: int, seed: int = 0, size: int = 1024, progress: bool = True) -> tuple[Path, list[dict]]:
    """Scenes ``0..n-1`` (rendered now or read from the cache); returns (cache directory, records)."""
    from PIL import Image

    from ...paths import cache_dir
    from ...utils.io import atomic_write_json, temp_file_beside
    from .engine import SceneRenderer

    cfg = vstar_config(size)
    root = cache_dir("synth-vstar", cache_key(cfg, seed))
    (root / "images").mkdir(exist_ok=True)
    (root / "records").mkdir(exist_ok=True)
    missing = [i for i in range(n) if not (root / "records" / f"{i:06d}.json").is_file()]
    if missing:
        from tqdm import tqdm

        renderer = SceneRenderer(cfg)
        try:
            for i in tqdm(missing, desc="synth-vstar scenes", unit="scene", disable=not progress):
                rec, rgb = render_scene(renderer, i, seed)
                png = root / rec["image"]
                tmp = temp_file_beside(png)
                try:
                    Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)
                    os.replace(tmp, png)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                atomic_write_json(root / "records" / f"{i:06d}.json", rec)  # last: marks the scene complete
        finally:
            renderer.close()
    recs = [json.loads((root / "records" / f"{i:06d}.json").read_text(encoding="utf-8")) for i in range(n)]
    return root, recs


__all__ = ["COLORS", "render_vstar_scenes", "render_scene", "target_layout", "vstar_config"]
