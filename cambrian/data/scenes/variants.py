"""Scene pools with known near-duplicates, for the MMVP pair miner: each base scene is rendered again from the
same camera with exactly one change, either one object's **colour** (another palette colour) or its **position**
(moved 0.6-1.2 m within the arena, clear of the others, still visible). A miner that surfaces (base, variant)
pairs has found images that differ in one object's colour or position.

Layout of ``out_dir``: ``images/{base:04d}_{kind}.png`` (kind = base | colour | position) and ``pool.json``
(one entry per image: image, base, kind, change).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...utils.io import atomic_write_json
from ...utils.progress import progress_bar
from .engine import COLORS, FAR, NEAR, Camera, ObjectSpec, SceneConfig, SceneRenderer, _bound_radius, scene_rng

KINDS = ("base", "colour", "position")


def _camera(d: dict, cfg: SceneConfig) -> Camera:
    import pybullet as p

    view = p.computeViewMatrix(d["eye"], d["target"], [0, 0, 1])
    proj = p.computeProjectionMatrixFOV(d["fov_deg"], d["width"] / d["height"], NEAR, FAR)
    return Camera(
        eye=list(d["eye"]),
        target=list(d["target"]),
        fov=d["fov_deg"],
        width=d["width"],
        height=d["height"],
        view=list(view),
        proj=list(proj),
    )


def _specs(scene: dict) -> list[ObjectSpec]:
    return [
        ObjectSpec(o["shape"], o["color"], o["size"], o["position_world"][0], o["position_world"][1], o["yaw"])
        for o in scene["objects"] + scene["hidden"]
    ]


def _moved(objs: list[ObjectSpec], k: int, rng: np.random.Generator, cfg: SceneConfig) -> ObjectSpec | None:
    o = objs[k]
    r = _bound_radius(o.shape, o.extent)
    for _ in range(80):
        ang = rng.random() * 2 * math.pi
        dist = rng.uniform(0.6, 1.2)
        x, y = o.x + dist * math.cos(ang), o.y + dist * math.sin(ang)
        if math.hypot(x, y) > cfg.arena_radius:
            continue
        if all(
            math.hypot(x - q.x, y - q.y) >= r + _bound_radius(q.shape, q.extent) + cfg.min_gap
            for m, q in enumerate(objs)
            if m != k
        ):
            return ObjectSpec(o.shape, o.color, o.size, x, y, o.yaw)
    return None


def render_variant_pool(
    out_dir: str | os.PathLike, n_base: int, seed: int = 0, size: int = 224, progress: bool = True
) -> list[dict]:
    """Render ``n_base`` scenes and their colour / position variants; returns (and writes) the pool entries."""
    from PIL import Image

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cfg = SceneConfig(width=size, height=size, min_objects=3, max_objects=6)
    ren = SceneRenderer(cfg)
    entries: list[dict] = []
    bar = progress_bar(total=n_base, desc="scene pool", unit="scene", enabled=progress, leave=False)
    try:
        for b in range(n_base):
            rng = scene_rng(seed, "mmvp-pool", b)
            sc = ren.render(rng)
            cam = _camera(sc["camera"], cfg)
            objs = _specs(sc)
            visible = len(sc["objects"])  # annotated (visible) objects come first in _specs
            Image.fromarray(sc["rgb"]).save(out / "images" / f"{b:04d}_base.png")
            entries.append({"image": f"images/{b:04d}_base.png", "base": b, "kind": "base", "change": None})
            k = int(rng.integers(visible))
            o = objs[k]
            new_colour = str(rng.choice([c for c in COLORS if c != o.color]))
            variants = {
                "colour": (
                    objs[:k] + [ObjectSpec(o.shape, new_colour, o.size, o.x, o.y, o.yaw)] + objs[k + 1 :],
                    {"object": o.color + " " + o.shape, "from": o.color, "to": new_colour},
                )
            }
            moved = _moved(objs, k, rng, cfg)
            if moved is not None:
                variants["position"] = (
                    objs[:k] + [moved] + objs[k + 1 :],
                    {
                        "object": o.color + " " + o.shape,
                        "from": [round(o.x, 2), round(o.y, 2)],
                        "to": [round(moved.x, 2), round(moved.y, 2)],
                    },
                )
            for kind, (vobjs, change) in variants.items():
                ren._build(vobjs)
                rgb, seg, _ = ren._render(cam)
                if int((seg == ren._bodies[k]).sum()) < cfg.min_visible_pixels:
                    continue  # the changed object ended up hidden or out of frame: not a one-change pair
                Image.fromarray(rgb).save(out / "images" / f"{b:04d}_{kind}.png")
                entries.append({"image": f"images/{b:04d}_{kind}.png", "base": b, "kind": kind, "change": change})
            bar.update(1)
    finally:
        ren.close()
        bar.close()
    atomic_write_json(out / "pool.json", {"n_base": n_base, "seed": seed, "size": size, "images": entries})
    return entries


def pair_label(a: dict, b: dict) -> str:
    """How two pool entries relate: "same scene: colour" (base vs its colour variant), "same scene: colour+position"
    (the two variants of one base), or "different scenes"."""
    if a["base"] != b["base"]:
        return "different scenes"
    kinds = sorted(k for k in (a["kind"], b["kind"]) if k != "base")
    return "same scene: " + "+".join(kinds)
