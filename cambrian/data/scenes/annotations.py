"""Scene records -> COCO-style instance annotations and Omni3D-style 3D annotations.

COCO (``annotations/coco.json``): ``images`` (id, file_name, width, height), ``annotations`` (id, image_id,
category_id, bbox ``[x, y, w, h]`` from the exact mask, area = mask pixels, iscrowd 0, segmentation as COCO
*uncompressed* RLE ``{"counts", "size": [h, w]}`` in column-major order), ``categories`` (id, name =
``"<colour> <shape>"``, supercategory = shape). Category ids are fixed by the palette and shape list, so every
split shares them.

Omni3D (``annotations/omni3d.json``): ``images`` (id, file_path, width, height, ``K`` 3x3), ``annotations`` (id,
image_id, category_id, category_name, ``bbox2D_tight`` [x1, y1, x2, y2] from the mask, ``bbox2D_proj`` from the
projected 3D corners, ``center_cam``, ``dimensions`` [w, h, l] metres, ``R_cam``, ``bbox3D_cam`` (8 x 3),
``depth`` = centre z, ``visibility`` (visible fraction; null when not measured because it is known to be
above the threshold), ``truncation`` 0, ``valid3D`` true, ``behind_camera`` false), same
categories. Camera frame: OpenCV axes, metres.

Only annotated (visible) objects appear; hidden ones are listed in ``scenes.jsonl`` under ``hidden``.
"""

from __future__ import annotations

import numpy as np

from .engine import COLORS, SHAPES, project


def categories(colors=tuple(COLORS), shapes=SHAPES) -> list[dict]:
    out = []
    for s in shapes:
        for c in colors:
            out.append({"id": len(out) + 1, "name": f"{c} {s}", "supercategory": s, "color": c, "shape": s})
    return out


def rle_encode(binary: np.ndarray) -> dict:
    """COCO uncompressed RLE of a HxW boolean mask (column-major runs, starting with a run of zeros)."""
    flat = np.asarray(binary, dtype=bool).flatten(order="F")
    h, w = binary.shape
    if flat.size == 0:
        return {"counts": [], "size": [h, w]}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"counts": [int(r) for r in runs], "size": [int(h), int(w)]}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for r in rle["counts"]:
        if val:
            flat[pos : pos + r] = True
        pos += r
        val = not val
    return flat.reshape((h, w), order="F")


def to_coco(scenes: list[dict], masks: dict | None = None, colors=tuple(COLORS), shapes=SHAPES) -> dict:
    """``scenes``: scene records (see :mod:`cambrian.data.scenes.render`); ``masks``: scene_id -> instance mask
    (HxW uint8) for the segmentation field; without it the segmentation is left out. ``colors``/``shapes``: the
    rendered palette (categories outside it would only ever be asked as "how many ...? 0")."""
    cats = categories(colors, shapes)
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for img_id, sc in enumerate(scenes, 1):
        cam = sc["camera"]
        images.append(
            {
                "id": img_id,
                "file_name": sc["image"],
                "width": cam["width"],
                "height": cam["height"],
                "scene_id": sc["scene_id"],
                "split": sc["split"],
            }
        )
        m = None if masks is None else masks.get(sc["scene_id"])
        for o in sc["objects"]:
            a = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": cat_id[o["category"]],
                "bbox": [float(v) for v in o["bbox"]],
                "area": float(o["pixels"]),
                "iscrowd": 0,
                "instance_id": o["instance_id"],
                "size": o["size"],
            }
            if m is not None:
                a["segmentation"] = rle_encode(m == o["instance_id"])
            anns.append(a)
    return {
        "info": {"description": "cambrian synthetic scenes (pybullet)", "version": "1"},
        "images": images,
        "annotations": anns,
        "categories": cats,
    }


def to_omni3d(scenes: list[dict], dataset_name: str = "Synth3D", colors=tuple(COLORS), shapes=SHAPES) -> dict:
    cats = categories(colors, shapes)
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for img_id, sc in enumerate(scenes, 1):
        cam = sc["camera"]
        K = np.asarray(cam["K"])
        images.append(
            {
                "id": img_id,
                "dataset_id": 0,
                "file_path": sc["image"],
                "width": cam["width"],
                "height": cam["height"],
                "K": cam["K"],
                "scene_id": sc["scene_id"],
                "split": sc["split"],
                "depth_path": sc.get("depth"),
            }
        )
        for o in sc["objects"]:
            b = o["box3d"]
            uv = project(np.asarray(b["bbox3D_cam"]), K)
            x, y, w, h = o["bbox"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "dataset_id": 0,
                    "category_id": cat_id[o["category"]],
                    "category_name": o["category"],
                    "bbox2D_tight": [float(x), float(y), float(x + w), float(y + h)],
                    "bbox2D_proj": [
                        float(uv[:, 0].min()),
                        float(uv[:, 1].min()),
                        float(uv[:, 0].max()),
                        float(uv[:, 1].max()),
                    ],
                    "center_cam": b["center_cam"],
                    "dimensions": b["dimensions"],
                    "R_cam": b["R_cam"],
                    "bbox3D_cam": b["bbox3D_cam"],
                    "depth": b["center_cam"][2],
                    "visibility": o["visible_fraction"],  # null = not measured (known >= the threshold)
                    "truncation": 0.0,
                    "valid3D": True,
                    "behind_camera": False,
                    "instance_id": o["instance_id"],
                }
            )
    return {"info": {"name": dataset_name, "id": 0}, "images": images, "annotations": anns, "categories": cats}
