"""Build CV-Bench-style questions from annotations (``cambrian cvbench build``).

Inputs
------
- 2D (Count, Relation): COCO-style instances ``{"images": [{id, file_name, width, height}], "annotations":
  [{image_id, category_id, bbox [x, y, w, h], area, iscrowd}], "categories": [{id, name, supercategory?}]}``
  (ADE20K converted to the same form works unchanged).
- 3D (Depth, Distance): Omni3D-style ``{"images": [{id, file_path, width, height, K}], "annotations": [{image_id,
  category_id | category_name, bbox3D_cam (8 x 3) | center_cam + dimensions + R_cam, bbox2D_tight |
  bbox2D_proj}], "categories": [...]}``; metres, camera frame.

Rules (docs/official-code.md#cvbench; the values the paper leaves open are parameters, defaults in :class:`BuildParams`)
------------------------------------------------------------------------------------------------------------
- **Count**: one question per counted category; the truth is the number of its instances. A category is skipped
  when any of its instances is crowd (``iscrowd``) or smaller than ``min_area`` pixels (the count would be
  ambiguous), or when its count exceeds ``count_max``. Existence checks: with probability ``count_zero_prob`` per
  image one absent category (truth 0) is asked. With ``count_supercategories`` the supercategories (shapes in
  the synthetic scenes) are counted too. Options: ``k`` (drawn from ``count_num_options``) consecutive counts
  containing the truth at a random offset; when 0 is not among them, the option farthest from the truth is
  replaced by 0, so "none" is always on offer. Options are shuffled.
- **Relation**: only categories with exactly one (non-crowd, >= ``min_area``) instance take part (several
  instances would make "the X" ambiguous). For a pair (A, B), d = centre(A) - centre(B) of their 2D boxes; the
  left/right axis qualifies when |dx| >= ``relation_margin`` x image width, above/below when |dy| >=
  ``relation_margin`` x image height; pairs where neither qualifies are dropped, otherwise one qualifying axis is
  picked at random. Options ``left/right`` or ``above/below``, shuffled.
- **Depth**: two single-instance categories A, B. A is closer only if the farthest of A's 8 box vertices is
  closer to the camera (Euclidean distance from the camera centre) than B's nearest vertex by ``depth_offset``
  metres; if neither A nor B is closer by that rule, the pair is dropped. The first-mentioned object gets the
  red box, the second the blue box; which of the two is mentioned first is random. Options ``(A) first
  (B) second`` (the template's order), so the gold letter is balanced by the random mention order.
- **Distance**: three single-instance categories (anchor, A, B). A is closer to the anchor only if the largest
  distance from A's vertices to the anchor's box centre is shorter than the smallest distance from B's vertices
  to it by ``distance_offset`` metres; otherwise (and vice versa) dropped. Boxes: anchor red, first-mentioned
  blue, second green.
- At most ``max_per_image[task]`` questions per image and task (random among the valid ones).

What is drawn: Count images are copied unchanged. Relation images are unchanged unless ``relation_boxes`` (then a
red box around A and the template's "(annotated by the red box)" variant). Depth: red box on the first-mentioned
object, blue on the second. Distance: red on the anchor, blue on the first-mentioned, green on the second. Boxes
are the objects' tight 2D boxes (``bbox2D_tight``, else ``bbox2D_proj``, else the projected 3D corners),
outlines ``box_width`` pixels wide (default ~1/100 of the image side, at least 2); the ``bbox`` column lists
them ``[x1, y1, x2, y2]`` in colour order.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from ..errors import InputError
from ..typed import Bool, ConfigError, Int, Num, OptInt, build, typed_config
from .schema import letter
from .writer import write_cvbench

T_COUNT = "How many {objects} are in the image?"
T_RELATION = (
    "Considering the relative positions of the {a} and the {b} in the image provided, "
    "where is the {a} located with respect to the {b}?"
)
T_DEPTH = (
    "Which object is closer to the camera taking this photo, the {a} (highlighted by a red box) or the "
    "{b} (highlighted by a blue box)?"
)
T_DISTANCE = (
    "Estimate the real-world distances between objects in this image. Which object is closer to the "
    "{anchor} (highlighted by a red box), the {a} (highlighted by a blue box) or the {b} (highlighted "
    "by a green box)?"
)


OMNI3D_SEED_OFFSET = 1_000_003  # the 3D questions draw from their own random stream (same seed, other draws)
PER_IMAGE_DEFAULTS = {"Count": 2, "Relation": 1, "Depth": 1, "Distance": 1}


@with_config(ConfigDict(extra="forbid"))
class PerImage(TypedDict, total=False):
    Count: Int(ge=0)
    Relation: Int(ge=0)
    Depth: Int(ge=0)
    Distance: Int(ge=0)


@typed_config
class BuildParams:
    """The rule parameters (``cambrian cvbench build --param key=value``), checked by the typed loader."""

    count_num_options: tuple[Int(ge=2), ...] = (4, 5, 6)
    count_max: Int(ge=1) = 6
    count_zero_prob: Num(ge=0, le=1) = 0.3
    count_supercategories: Bool = False
    min_area: Num(ge=0) = 50.0  # pixels
    relation_margin: Num(ge=0, le=1) = 0.05  # fraction of the image side
    relation_boxes: Bool = False
    depth_offset: Num(ge=0) = 0.1  # metres
    distance_offset: Num(ge=0) = 0.1  # metres
    max_per_image: PerImage | None = field(default_factory=lambda: dict(PER_IMAGE_DEFAULTS))
    box_width: OptInt(ge=1) = None

    def __post_init__(self):
        if not self.count_num_options:
            raise ConfigError("count_num_options needs at least one option count")
        self.max_per_image = {**PER_IMAGE_DEFAULTS, **(self.max_per_image or {})}

    @classmethod
    def from_dict(cls, d: dict | None, where: str | None = None) -> BuildParams:
        return build(cls, dict(d or {}), where)


@dataclass
class Question:
    task: str
    type: str
    image: str  # path of the source image (absolute, or relative to the annotation's image root)
    question: str
    choices: list
    answer_index: int
    boxes: list = field(default_factory=list)  # [([x1, y1, x2, y2], "red"), ...]
    source: str = ""
    source_dataset: str | None = None
    source_filename: str | None = None
    target_class: str | None = None
    target_size: float | None = None
    truth: object = None  # the answer value (count, "left", category name) for reports

    @property
    def answer(self) -> str:
        return f"({letter(self.answer_index)})"


# ----------------------------------------------------------------------------------------------------------
def plural(name: str) -> str:
    """Plural of a category name, on its last word ("red cube" -> "red cubes")."""
    head, _, last = name.rpartition(" ")
    irregular = {
        "person": "people",
        "man": "men",
        "woman": "women",
        "child": "children",
        "mouse": "mice",
        "foot": "feet",
        "sheep": "sheep",
        "glasses": "glasses",
        "scissors": "scissors",
    }
    if last in irregular:
        p = irregular[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        p = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        p = last[:-1] + "ies"
    elif last.endswith("f") and not last.endswith("ff"):
        p = last[:-1] + "ves"
    elif last.endswith("fe"):
        p = last[:-2] + "ves"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def count_options(truth: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` consecutive counts containing ``truth`` (random offset, never below 0), with 0 always present."""
    lo = int(rng.integers(max(0, truth - k + 1), truth + 1))
    opts = list(range(lo, lo + k))
    if 0 not in opts:
        far = max(opts, key=lambda v: (abs(v - truth), v))
        opts[opts.index(far)] = 0
    return sorted(opts)


def _shuffled(choices: list, correct: int, rng: np.random.Generator) -> tuple[list, int]:
    perm = rng.permutation(len(choices))
    return [choices[i] for i in perm], int(np.flatnonzero(perm == correct)[0])


def _center_xywh(b) -> tuple[float, float]:
    x, y, w, h = b
    return x + w / 2, y + h / 2


# ---------------------------------------------------------------------------------------------------------- 2D
def _area(a: dict) -> float:
    return a.get("area", a["bbox"][2] * a["bbox"][3])


def questions_from_coco(
    coco: dict,
    params: BuildParams | None = None,
    seed: int = 0,
    *,
    source: str = "COCO",
    source_dataset: str | None = None,
    image_root: str | os.PathLike | None = None,
    stats: Counter | None = None,
) -> list[Question]:
    """Count and Relation questions from COCO-style instance annotations."""
    params = params or BuildParams()
    stats = stats if stats is not None else Counter()
    rng = np.random.default_rng(seed)
    cats = {c["id"]: c for c in coco["categories"]}
    supers = sorted(
        {c.get("supercategory") for c in cats.values() if c.get("supercategory")} - {c["name"] for c in cats.values()}
    )
    by_image = defaultdict(list)
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    out: list[Question] = []
    for img in sorted(coco["images"], key=lambda im: im["id"]):
        path = str(Path(image_root) / img["file_name"]) if image_root else img["file_name"]
        common = dict(
            image=path,
            source=source,
            source_dataset=source_dataset or source,
            source_filename=os.path.basename(img["file_name"]),
        )
        per_cat = defaultdict(list)
        per_super = defaultdict(list)
        for a in by_image.get(img["id"], []):
            per_cat[cats[a["category_id"]]["name"]].append(a)
            sc = cats[a["category_id"]].get("supercategory")
            if sc in supers:
                per_super[sc].append(a)
        groups, names = dict(per_cat), [c["name"] for c in cats.values()]
        if params.count_supercategories:
            groups.update(per_super)
            names = names + supers
        out += _count_questions(groups, names, params, rng, stats, common)
        out += _relation_questions(per_cat, (img["width"], img["height"]), params, rng, stats, common)
    return out


def _clean(group: list[dict], params: BuildParams) -> bool:
    """No crowd instance and none smaller than ``min_area`` (otherwise a count or "the X" would be ambiguous)."""
    return all(not a.get("iscrowd", 0) and _area(a) >= params.min_area for a in group)


def _count_questions(groups: dict, names: list[str], params: BuildParams, rng, stats: Counter, common: dict):
    """One image's Count questions: ``groups`` maps each present category (and supercategory) to its instances,
    ``names`` lists every category that could be asked about."""
    present = []
    for name, g in sorted(groups.items()):
        if not _clean(g, params):
            stats["count_dropped_ambiguous"] += 1
        elif len(g) > params.count_max:
            stats["count_dropped_too_many"] += 1
        else:
            present.append(name)
    per_image = params.max_per_image.get("Count", 0)
    chosen = [present[i] for i in rng.permutation(len(present))[:per_image]]
    absent = sorted(set(names) - set(groups))
    if absent and per_image > 0 and rng.random() < params.count_zero_prob:
        zero = absent[int(rng.integers(len(absent)))]
        if len(chosen) >= per_image:
            chosen[-1] = zero
        else:
            chosen.append(zero)
    out = []
    for name in chosen:
        g = groups.get(name, [])
        truth = len(g)
        k = int(rng.choice(params.count_num_options))
        base = count_options(truth, k, rng)
        opts, ans = _shuffled([str(v) for v in base], base.index(truth), rng)
        sizes = [_area(a) for a in g]
        out.append(
            Question(
                task="Count",
                type="2D",
                question=T_COUNT.format(objects=plural(name)),
                choices=opts,
                answer_index=ans,
                target_class=name,
                target_size=float(np.mean(sizes)) if sizes else None,
                truth=truth,
                **common,
            )
        )
    return out


def _relation_questions(per_cat: dict, size: tuple[int, int], params: BuildParams, rng, stats: Counter, common: dict):
    """One image's Relation questions over its single-instance categories (image ``size`` = (W, H))."""
    W, H = size
    singles = sorted(n for n, g in per_cat.items() if len(g) == 1 and _clean(g, params))
    stats["relation_multi_instance_categories"] += sum(1 for g in per_cat.values() if len(g) > 1)
    cands = []
    for a_name, b_name in itertools.permutations(singles, 2):
        ca, cb = _center_xywh(per_cat[a_name][0]["bbox"]), _center_xywh(per_cat[b_name][0]["bbox"])
        dx, dy = ca[0] - cb[0], ca[1] - cb[1]
        axes = []
        if abs(dx) >= params.relation_margin * W:
            axes.append(("left", "right", 0 if dx < 0 else 1))
        if abs(dy) >= params.relation_margin * H:
            axes.append(("above", "below", 0 if dy < 0 else 1))
        if axes:
            cands.append((a_name, b_name, axes))
        else:
            stats["relation_dropped_margin"] += 1
    out = []
    for i in rng.permutation(len(cands))[: params.max_per_image.get("Relation", 0)]:
        a_name, b_name, axes = cands[i]
        neg, pos, which = axes[int(rng.integers(len(axes)))]
        choices, ans = _shuffled([neg, pos], which, rng)
        a_txt = f"{a_name} (annotated by the red box)" if params.relation_boxes else a_name
        boxes = []
        if params.relation_boxes:
            x, y, w, h = per_cat[a_name][0]["bbox"]
            boxes = [([x, y, x + w, y + h], "red")]
        out.append(
            Question(
                task="Relation",
                type="2D",
                question=T_RELATION.format(a=a_txt, b=b_name),
                choices=choices,
                answer_index=ans,
                boxes=boxes,
                truth=(neg, pos)[which],
                **common,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------- 3D
def _corners(a: dict) -> np.ndarray:
    if a.get("bbox3D_cam") is not None:
        return np.asarray(a["bbox3D_cam"], dtype=np.float64).reshape(8, 3)
    c = np.asarray(a["center_cam"], dtype=np.float64)
    dims = np.asarray(a["dimensions"], dtype=np.float64)
    R = np.asarray(a["R_cam"], dtype=np.float64).reshape(3, 3)
    signs = np.array(list(itertools.product([-1, 1], repeat=3)), dtype=np.float64)
    return c + (signs * dims / 2) @ R.T


def _box2d(a: dict, img: dict) -> list[float]:
    for k in ("bbox2D_tight", "bbox2D_proj"):
        if a.get(k) is not None and a[k][0] >= -1:
            return [float(v) for v in a[k]]
    K = np.asarray(img["K"], dtype=np.float64)
    uvw = _corners(a) @ K.T
    uv = uvw[:, :2] / uvw[:, 2:3]
    return [float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max())]


def depth_order(a_corners: np.ndarray, b_corners: np.ndarray, offset: float) -> int | None:
    """0 if A is closer to the camera (A's farthest vertex + offset < B's nearest vertex), 1 if B is, else None."""
    da, db = np.linalg.norm(a_corners, axis=1), np.linalg.norm(b_corners, axis=1)
    if da.max() + offset < db.min():
        return 0
    if db.max() + offset < da.min():
        return 1
    return None


def distance_order(
    anchor_corners: np.ndarray, a_corners: np.ndarray, b_corners: np.ndarray, offset: float
) -> int | None:
    """0 if A is closer to the anchor (max over A's vertices of the distance to the anchor's centre + offset <
    min over B's vertices), 1 if B is, else None."""
    c = anchor_corners.mean(axis=0)
    da, db = np.linalg.norm(a_corners - c, axis=1), np.linalg.norm(b_corners - c, axis=1)
    if da.max() + offset < db.min():
        return 0
    if db.max() + offset < da.min():
        return 1
    return None


def questions_from_omni3d(
    omni: dict,
    params: BuildParams | None = None,
    seed: int = 0,
    *,
    source: str = "Omni3D",
    source_dataset: str | None = None,
    image_root: str | os.PathLike | None = None,
    stats: Counter | None = None,
) -> list[Question]:
    """Depth and Distance questions from Omni3D-style 3D boxes."""
    params = params or BuildParams()
    stats = stats if stats is not None else Counter()
    rng = np.random.default_rng(seed + OMNI3D_SEED_OFFSET)
    cat_names = {c["id"]: c["name"] for c in omni.get("categories", [])}
    by_image = defaultdict(list)
    for a in omni["annotations"]:
        if a.get("behind_camera") or a.get("valid3D") is False:
            continue
        by_image[a["image_id"]].append(a)
    out: list[Question] = []
    for img in sorted(omni["images"], key=lambda im: im["id"]):
        fp = img.get("file_path") or img.get("file_name")
        path = str(Path(image_root) / fp) if image_root else fp
        common = dict(
            image=path,
            source=source,
            source_dataset=source_dataset or img.get("dataset_name") or source,
            source_filename=os.path.basename(fp),
        )
        per_cat = defaultdict(list)
        for a in by_image.get(img["id"], []):
            per_cat[a.get("category_name") or cat_names[a["category_id"]]].append(a)
        singles = []
        for n, g in sorted(per_cat.items()):
            b = _box2d(g[0], img)
            if len(g) == 1 and (b[2] - b[0]) * (b[3] - b[1]) >= params.min_area:
                singles.append(n)
        corners = {n: _corners(per_cat[n][0]) for n in singles}
        boxes = {n: _box2d(per_cat[n][0], img) for n in singles}

        # ---- Depth
        pairs = []
        for a_name, b_name in itertools.combinations(singles, 2):
            o = depth_order(corners[a_name], corners[b_name], params.depth_offset)
            if o is None:
                stats["depth_dropped_offset"] += 1
            else:
                pairs.append((a_name, b_name, o))
        for i in rng.permutation(len(pairs))[: params.max_per_image.get("Depth", 0)]:
            a_name, b_name, o = pairs[i]
            if rng.random() < 0.5:  # random mention order
                a_name, b_name, o = b_name, a_name, 1 - o
            out.append(
                Question(
                    task="Depth",
                    type="3D",
                    question=T_DEPTH.format(a=a_name, b=b_name),
                    choices=[a_name, b_name],
                    answer_index=o,
                    boxes=[(boxes[a_name], "red"), (boxes[b_name], "blue")],
                    truth=(a_name, b_name)[o],
                    **common,
                )
            )

        # ---- Distance
        triples = []
        for anchor in singles:
            for a_name, b_name in itertools.combinations([n for n in singles if n != anchor], 2):
                o = distance_order(corners[anchor], corners[a_name], corners[b_name], params.distance_offset)
                if o is None:
                    stats["distance_dropped_offset"] += 1
                else:
                    triples.append((anchor, a_name, b_name, o))
        for i in rng.permutation(len(triples))[: params.max_per_image.get("Distance", 0)]:
            anchor, a_name, b_name, o = triples[i]
            if rng.random() < 0.5:
                a_name, b_name, o = b_name, a_name, 1 - o
            out.append(
                Question(
                    task="Distance",
                    type="3D",
                    question=T_DISTANCE.format(anchor=anchor, a=a_name, b=b_name),
                    choices=[a_name, b_name],
                    answer_index=o,
                    boxes=[(boxes[anchor], "red"), (boxes[a_name], "blue"), (boxes[b_name], "green")],
                    truth=(a_name, b_name)[o],
                    **common,
                )
            )
    return out


def build_cvbench(
    out_dir: str | os.PathLike,
    *,
    coco: dict | str | None = None,
    coco_images: str | None = None,
    omni3d: dict | str | None = None,
    omni3d_images: str | None = None,
    source_2d: str = "COCO",
    source_3d: str = "Omni3D",
    source_dataset_2d: str | None = None,
    source_dataset_3d: str | None = None,
    seed: int = 0,
    params: BuildParams | dict | None = None,
    progress: bool = False,
) -> dict:
    """Questions from COCO-style (2D) and/or Omni3D-style (3D) annotations, written in the official layout.

    ``coco`` / ``omni3d`` are dicts or JSON paths; image paths in them are relative to ``coco_images`` /
    ``omni3d_images`` (default: the JSON file's directory). Returns the build report.
    """
    params = params if isinstance(params, BuildParams) else BuildParams.from_dict(params)
    stats: Counter = Counter()
    qs: list[Question] = []

    def _load(x, root):
        if isinstance(x, (str, os.PathLike)):
            with open(x, encoding="utf-8") as f:
                return json.load(f), root if root is not None else str(Path(x).parent)
        return x, root

    if coco is not None:
        data, root = _load(coco, coco_images)
        qs += questions_from_coco(
            data, params, seed, source=source_2d, source_dataset=source_dataset_2d, image_root=root, stats=stats
        )
    if omni3d is not None:
        data, root = _load(omni3d, omni3d_images)
        qs += questions_from_omni3d(
            data, params, seed, source=source_3d, source_dataset=source_dataset_3d, image_root=root, stats=stats
        )
    if not qs:
        raise InputError("no questions: give COCO-style and/or Omni3D-style annotations with usable objects")
    report = {"params": asdict(params), "seed": seed, "dropped": dict(stats)}
    return write_cvbench(qs, out_dir, box_width=params.box_width, extra_report=report, progress=progress)


SYNTH_PARAMS = {"count_supercategories": True}  # the shapes are counted too; the other rules as BuildParams


def build_cvbench_synth(
    scene_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    params: BuildParams | dict | None = None,
    progress: bool = False,
) -> dict:
    """CV-Bench-Synth from a directory rendered by :func:`cambrian.data.scenes.render_scenes` (its
    ``annotations/coco.json`` and ``annotations/omni3d.json``): sources ``Synth2D`` / ``Synth3D``, same four tasks
    and schema. Shapes are counted too (``count_supercategories``)."""
    sd = Path(scene_dir)
    if not isinstance(params, BuildParams):
        params = BuildParams.from_dict({**SYNTH_PARAMS, **(params or {})})
    return build_cvbench(
        out_dir,
        coco=str(sd / "annotations" / "coco.json"),
        coco_images=str(sd),
        omni3d=str(sd / "annotations" / "omni3d.json"),
        omni3d_images=str(sd),
        source_2d="Synth2D",
        source_3d="Synth3D",
        seed=seed,
        params=params,
        progress=progress,
    )
