"""Render a split of synthetic scenes to disk.

Layout of ``out_dir`` (one split per directory; train and test go to different directories)::

    images/{split}_{i:06d}.png       RGB
    masks/{split}_{i:06d}.png        uint8 instance mask: 0 = background / hidden, k = annotated object k
    depth/{split}_{i:06d}.png        uint16 metric depth in millimetres (distance along the optical axis)
    scenes.jsonl                     one record per scene: scene_id, split, index, image/mask/depth paths, camera
                                     (eye, target, fov, K), objects (category, colour, shape, size, pixels,
                                     visible_fraction, bbox, box3d), hidden objects, fingerprint, rejections
    annotations/coco.json            COCO-style instances (see annotations.py)
    annotations/omni3d.json          Omni3D-style 3D boxes
    meta.json                        seed, split, n, config, timing

``render_scenes`` is deterministic for (seed, split, config): scene i depends only on those and i, so the number of
workers does not change the output.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...utils.io import atomic_write_json, atomic_write_text
from ...utils.progress import progress_bar
from .annotations import to_coco, to_omni3d
from .engine import SHAPES, SceneConfig, SceneRenderer, config_dict, scene_fingerprint, scene_rng

_WORKER: dict = {}


def _init_worker(cfg_dict: dict, out_dir: str, seed: int, split: str, save_depth: bool) -> None:
    _WORKER.clear()
    _WORKER.update(
        renderer=SceneRenderer(SceneConfig.from_dict(cfg_dict)),
        out_dir=Path(out_dir),
        seed=seed,
        split=split,
        save_depth=save_depth,
    )


def _render_one(index: int) -> dict:
    from PIL import Image

    w = _WORKER
    out, split = w["out_dir"], w["split"]
    sc = w["renderer"].render(scene_rng(w["seed"], split, index))
    sid = f"{split}_{index:06d}"
    rec = {
        "scene_id": sid,
        "split": split,
        "index": index,
        "image": f"images/{sid}.png",
        "mask": f"masks/{sid}.png",
        "depth": f"depth/{sid}.png" if w["save_depth"] else None,
        "camera": sc["camera"],
        "objects": sc["objects"],
        "hidden": sc["hidden"],
        "rejections": sc["rejections"],
    }
    rec["fingerprint"] = scene_fingerprint(rec)
    Image.fromarray(sc["rgb"]).save(out / rec["image"], optimize=False, compress_level=1)
    Image.fromarray(sc["mask"]).save(out / rec["mask"], compress_level=1)
    if w["save_depth"]:
        mm = np.clip(np.round(sc["depth"] * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(mm).save(out / rec["depth"], compress_level=1)
    return rec


def load_mask(scene_dir: str | os.PathLike, rec: dict) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(Path(scene_dir) / rec["mask"]))


def load_depth(scene_dir: str | os.PathLike, rec: dict) -> np.ndarray:
    """Metric depth (metres, float32) of a scene rendered with save_depth."""
    from PIL import Image

    return np.asarray(Image.open(Path(scene_dir) / rec["depth"])).astype(np.float32) / 1000.0


def read_scenes(scene_dir: str | os.PathLike) -> list[dict]:
    with open(Path(scene_dir) / "scenes.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def render_scenes(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    split: str = "train",
    config: SceneConfig | dict | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
    save_depth: bool = True,
    coco_segmentation: bool = True,
) -> dict:
    """Render ``n`` scenes of ``split`` into ``out_dir``; returns a summary (n, seconds, scenes_per_s, ...)."""
    cfg = config if isinstance(config, SceneConfig) else SceneConfig.from_dict(config)
    out = Path(out_dir)
    for sub in ("images", "masks", "depth", "annotations"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    args = (config_dict(cfg), str(out), int(seed), split, save_depth)
    t0 = time.perf_counter()
    recs: list[dict] = []
    bar = progress_bar(total=n, desc=f"scenes[{split}]", unit="scene", enabled=progress)
    if workers <= 1:
        _init_worker(*args)
        try:
            for i in range(n):
                recs.append(_render_one(i))
                bar.update(1)
        finally:
            _WORKER["renderer"].close()
            _WORKER.clear()
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=args) as pool:
            for rec in pool.imap(_render_one, range(n), chunksize=4):
                recs.append(rec)
                bar.update(1)
    bar.close()
    render_s = time.perf_counter() - t0

    atomic_write_text(out / "scenes.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    masks = {r["scene_id"]: load_mask(out, r) for r in recs} if coco_segmentation else None
    pal = {"colors": tuple(cfg.colors), "shapes": tuple(s for s in SHAPES if s in cfg.shapes)}
    atomic_write_json(out / "annotations" / "coco.json", to_coco(recs, masks, **pal), indent=None)
    atomic_write_json(out / "annotations" / "omni3d.json", to_omni3d(recs, **pal), indent=None)
    total_s = time.perf_counter() - t0
    rej: dict = {}
    for r in recs:
        for k, v in r["rejections"].items():
            rej[k] = rej.get(k, 0) + v
    summary = {
        "n": n,
        "seed": seed,
        "split": split,
        "workers": workers,
        "render_seconds": round(render_s, 3),
        "total_seconds": round(total_s, 3),
        "scenes_per_s": round(n / total_s, 2) if total_s > 0 else None,
        "objects": sum(len(r["objects"]) for r in recs),
        "hidden_objects": sum(len(r["hidden"]) for r in recs),
        "rejections": rej,
        "config": config_dict(cfg),
    }
    atomic_write_json(out / "meta.json", summary)
    return summary


def assert_disjoint(scene_dir_a: str | os.PathLike, scene_dir_b: str | os.PathLike) -> None:
    """Raise ValueError if two scene directories share a scene (same layout and camera fingerprint)."""
    fa = {r["fingerprint"]: r["scene_id"] for r in read_scenes(scene_dir_a)}
    shared = [(fa[r["fingerprint"]], r["scene_id"]) for r in read_scenes(scene_dir_b) if r["fingerprint"] in fa]
    if shared:
        raise InputError(f"{len(shared)} scene(s) shared between {scene_dir_a} and {scene_dir_b}, e.g. {shared[:3]}")
