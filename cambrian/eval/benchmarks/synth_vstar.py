"""synth-vstar: V*Bench's two question types on large synthetic renders with one small target among distractors
(:mod:`cambrian.data.scenes.vstar`), with ground-truth boxes so that a search can be scored too.

Per scene two questions:

- **attribute**: "What color is the {shape}?" (colour scenes; the target is the only object of its shape) or "What
  shape is the {colour} object?" (shape scenes; the only object of its colour). Choices: the palette's colours, or
  the shapes.
- **spatial**: "Is the {target} on the left or right side of the {reference}?" about the target and a distractor
  whose colour and shape no other object shares, at least ``min_dx`` of the image width apart; choices left, right.

Layout of the directory :func:`build_synth_vstar` writes: ``questions.jsonl`` (``{"id", "image", "question",
"answer", "type" (color | shape | spatial), "choices", "scene", "targets": [{"name", "box": [x0, y0, x1, y1]}]}``;
``image`` relative to the file; boxes in image pixels) and ``images/``. The prompt is the question and
"Answer the question using a single word or phrase."; multiple choice over ``choices`` (``--mc likelihood``, V*'s
protocol), generated answers scored as synth-attribute's (first word). Metrics: ``accuracy`` (overall),
``attribute`` (colour + shape), ``spatial``, ``per_type``, and ``chance`` of each.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...prompts import SHORT
from ...utils.io import atomic_write_json, atomic_write_text, read_jsonl
from ..api import Benchmark, EvalSample, MCOptions, register_benchmark
from ._common import lazy_image, mean
from .synth_attribute import is_correct, normalize

QUESTIONS = "questions.jsonl"
TYPES = ("color", "shape", "spatial")
SPATIAL_Q = "Is the {a} on the left or right side of the {b}?"
LEFT_RIGHT = ["left", "right"]


def _xyxy(bbox) -> list[float]:
    x, y, w, h = bbox
    return [float(x), float(y), float(x + w), float(y + h)]


def scene_questions(rec: dict, colors: Sequence[str], shapes: Sequence[str], min_dx: float, rng) -> list[dict]:
    """The attribute and (when a reference object qualifies) spatial question of one synth-vstar scene record."""
    from ...data.scenes.attributes import COLOR_Q, SHAPE_Q

    objs = rec["objects"]
    target = next(o for o in objs if o["instance_id"] == rec["target"])
    W = rec["camera"]["width"]
    if rec["kind"] == "color":
        name, q = target["shape"], COLOR_Q.format(shape=target["shape"])
        attr = {"type": "color", "question": q, "answer": target["color"], "choices": list(colors)}
    else:
        name, q = f"{target['color']} object", SHAPE_Q.format(color=target["color"])
        attr = {"type": "shape", "question": q, "answer": target["shape"], "choices": list(shapes)}
    box = _xyxy(target["bbox"])
    attr["targets"] = [{"name": name, "box": box}]
    out = [attr]
    combos = defaultdict(int)
    for o in objs:
        combos[(o["color"], o["shape"])] += 1
    tx = (box[0] + box[2]) / 2
    refs = [
        o
        for o in objs
        if o is not target
        and combos[(o["color"], o["shape"])] == 1
        and abs((o["bbox"][0] + o["bbox"][2] / 2) - tx) >= min_dx * W
    ]
    if refs:
        ref = refs[int(rng.integers(len(refs)))]
        rbox = _xyxy(ref["bbox"])
        rname = f"{ref['color']} {ref['shape']}"
        side = "left" if tx < (rbox[0] + rbox[2]) / 2 else "right"
        out.append(
            {
                "type": "spatial",
                "question": SPATIAL_Q.format(a=name, b=rname),
                "answer": side,
                "choices": list(LEFT_RIGHT),
                "targets": [{"name": name, "box": box}, {"name": rname, "box": rbox}],
            }
        )
    return out


def build_synth_vstar(
    out_dir: str | os.PathLike,
    n_scenes: int = 100,
    *,
    seed: int = 0,
    size: int = 1024,
    min_dx: float = 0.08,
    progress: bool = True,
) -> dict:
    """Render (or reuse from the cache) ``n_scenes`` scenes and write the benchmark; returns a summary."""
    from ...data.scenes.vstar import render_vstar_scenes, vstar_config

    cfg = vstar_config(size)
    root, recs = render_vstar_scenes(n_scenes, seed=seed, size=size, progress=progress)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 41])
    lines, per_type = [], defaultdict(int)
    for rec in recs:
        name = Path(rec["image"]).name
        dst = out / "images" / name
        if not dst.exists():
            shutil.copyfile(root / rec["image"], dst)
        for q in scene_questions(rec, cfg.colors, cfg.shapes, min_dx, rng):
            row = {"id": len(lines), "image": f"images/{name}", "scene": rec["scene_id"], **q}
            lines.append(json.dumps(row) + "\n")
            per_type[q["type"]] += 1
    atomic_write_text(out / QUESTIONS, "".join(lines))
    summary = {"n": len(lines), "scenes": n_scenes, "per_type": dict(per_type), "size": size, "seed": seed}
    atomic_write_json(out / "meta.json", summary)
    return summary


@register_benchmark("synth-vstar")
class SynthVStar(Benchmark):
    category = "Vision-Centric"
    max_new_tokens = 8
    primary_metric = "accuracy"
    metric_name = "accuracy (attribute + spatial)"

    def load(self, path: str | None) -> list[EvalSample]:
        if path is None:
            raise FileNotFoundError(
                "synth-vstar: give the directory written by `cambrian data synth-vstar` (no hub copy)"
            )
        root = Path(path)
        f = root / QUESTIONS
        if not f.is_file():
            raise FileNotFoundError(f"synth-vstar: {f} not found")
        out = []
        for k, r in enumerate(read_jsonl(f)):
            missing = [x for x in ("id", "image", "question", "answer", "type", "choices", "targets") if x not in r]
            if missing:
                raise InputError(f"synth-vstar: {f} line {k + 1} lacks {missing}")
            out.append(
                EvalSample(
                    idx=r["id"],
                    prompt=f"{r['question']}\n{SHORT}",
                    images=[lazy_image(r["image"], root)],
                    answer=r["answer"],
                    meta={
                        "category": r["type"],
                        "choices": r["choices"],
                        "scene": r.get("scene"),
                        "targets": r["targets"],
                    },
                )
            )
        if not out:
            raise InputError(f"synth-vstar: no questions in {f}")
        return out

    def extract(self, sample: EvalSample, prediction: str):
        return normalize(prediction)

    def mc_options(self, sample: EvalSample) -> MCOptions:
        return MCOptions(tuple(sample.meta["choices"]))

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        by = defaultdict(list)
        chance = defaultdict(list)
        for s in samples:
            ok = float(is_correct(predictions.get(s.idx), s.answer)) if s.idx in predictions else 0.0
            by[s.meta["category"]].append(ok)
            chance[s.meta["category"]].append(1.0 / len(s.meta["choices"]))
        attr = by["color"] + by["shape"]
        return {
            "accuracy": mean([v for vs in by.values() for v in vs]),
            "attribute": mean(attr),
            "spatial": mean(by["spatial"]),
            "per_type": {k: mean(v) for k, v in sorted(by.items())},
            "chance": mean([v for vs in chance.values() for v in vs]),
            "chance_per_type": {k: mean(v) for k, v in sorted(chance.items())},
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
