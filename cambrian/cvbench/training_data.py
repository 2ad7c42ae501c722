"""LLaVA-format training data from rendered scenes.

Each line of the JSONL: ``{"id", "image": <path relative to the scene dir>, "conversations": [{"from": "human",
"value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}`` (``<image>`` only in the first human turn).
Train with ``image_folder = scene_dir``.

- **stage 1** (alignment captions): one record per scene: a caption prompt and a short caption listing the
  objects ("a large red cube on the left, in front") and how many of each shape.
- **stage 2** (instructions), per scene:
  * one multi-turn record on the plain image (``turns`` turns drawn from): CV-Bench-style Count and Relation
    multiple-choice questions (the builder's rules and templates, prompt + "\\nAnswer with the option's letter from
    the given choices directly.", answer = the letter), short-answer questions carrying "Answer the question using
    a single word or phrase." (counts, colour of a unique shape, shape of a unique colour, left/right and
    above/below yes/no, nearer of two objects), and an open description ("Describe the scene in detail.");
  * Depth and Distance multiple-choice questions need their coloured boxes, so each gets its own single-turn
    record whose image (with the boxes drawn) is written to ``<scene_dir>/boxed/``.

Response-format prompts follow docs/official-code.md#answer-machine (the "answer machine" fix): every short-answer question carries
its format instruction; open questions carry none and get full-sentence answers.
Use train-split scenes only; :func:`cambrian.data.scenes.render.assert_disjoint` checks against a test dir.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..data.scenes.attributes import NUMBER_WORDS, attribute_questions
from ..data.scenes.render import read_scenes
from ..errors import InputError
from ..prompts import LETTER, SHORT, letter, with_instruction
from ..utils.io import atomic_write_text
from .builder import BuildParams, plural, questions_from_coco, questions_from_omni3d
from .schema import format_prompt
from .writer import draw_boxes

CAPTION_PROMPTS = [
    "Describe the image briefly.",
    "What objects are in this picture and where are they?",
    "Give a short description of the scene.",
    "List the objects you see.",
]
DETAIL_PROMPTS = ["Describe the scene in detail.", "Describe every object in this image and where it is."]


def _where(o: dict, W: int, H: int) -> str:
    x, y, w, h = o["bbox"]
    cx, cy = (x + w / 2) / W, (y + h / 2) / H
    horiz = "on the left" if cx < 1 / 3 else "on the right" if cx > 2 / 3 else "in the middle"
    vert = "at the back" if cy < 0.4 else "in front" if cy > 0.65 else ""
    return f"{horiz}, {vert}" if vert else horiz


def _num(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def caption(scene: dict) -> str:
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    objs = sorted(scene["objects"], key=lambda o: o["bbox"][0] + o["bbox"][2] / 2)
    shapes = Counter(o["shape"] for o in objs)
    parts = [f"a {o['size']} {o['category']} {_where(o, W, H)}" for o in objs]
    tally = ", ".join(f"{_num(n)} {plural(s) if n > 1 else s}" for s, n in sorted(shapes.items()))
    return f"There are {_num(len(objs))} objects ({tally}): " + "; ".join(parts) + "."


def detailed_description(scene: dict) -> str:
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    objs = sorted(scene["objects"], key=lambda o: o["bbox"][0] + o["bbox"][2] / 2)
    near = sorted(scene["objects"], key=lambda o: o["box3d"]["center_cam"][2])
    lines = [f"The image shows {_num(len(objs))} objects on a grey floor, from left to right:"]
    for o in objs:
        lines.append(f"- a {o['size']} {o['category']} {_where(o, W, H)}.")
    lines.append(
        f"The {near[0]['category']} is the closest to the camera and the {near[-1]['category']} is the farthest."
    )
    return "\n".join(lines)


def _short_questions(scene: dict, rng: np.random.Generator, margin: float) -> list[tuple[str, str]]:
    """(question, answer) pairs with single word/phrase answers."""
    objs = scene["objects"]
    W, H = scene["camera"]["width"], scene["camera"]["height"]
    out = []
    shapes = Counter(o["shape"] for o in objs)
    cats = Counter(o["category"] for o in objs)
    for s in ("cube", "sphere", "cylinder"):
        out.append((f"How many {plural(s)} are there?", str(shapes.get(s, 0))))
    for c, n in cats.items():
        out.append((f"How many {plural(c)} are there?", str(n)))
    out.append(("How many objects are there?", str(len(objs))))
    out += [(q["question"], q["answer"]) for q in attribute_questions(scene)]
    singles = [o for o in objs if cats[o["category"]] == 1]
    for _ in range(4):
        if len(singles) < 2:
            break
        i, j = rng.choice(len(singles), 2, replace=False)
        a, b = singles[i], singles[j]
        (ax, ay), (bx, by) = [(o["bbox"][0] + o["bbox"][2] / 2, o["bbox"][1] + o["bbox"][3] / 2) for o in (a, b)]
        if abs(ax - bx) >= margin * W:
            out.append((f"Is the {a['category']} to the left of the {b['category']}?", "Yes" if ax < bx else "No"))
        if abs(ay - by) >= margin * H:
            out.append((f"Is the {a['category']} above the {b['category']}?", "Yes" if ay < by else "No"))
        za, zb = a["box3d"]["center_cam"][2], b["box3d"]["center_cam"][2]
        if abs(za - zb) > 0.5:
            out.append(
                (
                    f"Which is closer to the camera, the {a['category']} or the {b['category']}?",
                    a["category"] if za < zb else b["category"],
                )
            )
    return out


def make_llava_data(
    scene_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    stage: int = 2,
    seed: int = 0,
    turns: int = 4,
    params: BuildParams | dict | None = None,
    short_ratio: float = 0.4,
    detail_prob: float = 0.15,
) -> dict:
    """Write LLaVA JSONL for ``stage`` 1 (captions) or 2 (instructions); returns counts.

    Stage 2: ``turns`` turns per plain-image record: multiple-choice with probability ``1 - short_ratio``
    (Count/Relation from the builder, up to what the scene supports), else short answer; with ``detail_prob``
    the record ends with an open detailed description. Depth/Distance multiple-choice items get one record each
    on a boxed copy of the image (``boxed/``).
    """
    sd = Path(scene_dir)
    scenes = read_scenes(sd)
    rng = np.random.default_rng([seed, stage, 7])
    records: list[dict] = []
    kinds: Counter = Counter()
    if stage == 1:
        for sc in scenes:
            p = CAPTION_PROMPTS[int(rng.integers(len(CAPTION_PROMPTS)))]
            records.append(
                {
                    "id": f"{sc['scene_id']}-cap",
                    "image": sc["image"],
                    "conversations": [
                        {"from": "human", "value": f"<image>\n{p}"},
                        {"from": "gpt", "value": caption(sc)},
                    ],
                }
            )
            kinds["caption"] += 1
    elif stage == 2:
        P = (
            params
            if isinstance(params, BuildParams)
            else BuildParams.from_dict(
                {
                    "count_supercategories": True,
                    "max_per_image": {"Count": 3, "Relation": 2, "Depth": 1, "Distance": 1},
                    **(params or {}),
                }
            )
        )
        with open(sd / "annotations" / "coco.json", encoding="utf-8") as f:
            coco = json.load(f)
        with open(sd / "annotations" / "omni3d.json", encoding="utf-8") as f:
            omni = json.load(f)
        # image paths relative to the scene dir (image_root=None keeps file_name as written)
        qs = questions_from_coco(coco, P, seed, source="Synth2D") + questions_from_omni3d(
            omni, P, seed, source="Synth3D"
        )
        by_image = defaultdict(list)
        for q in qs:
            by_image[q.image].append(q)
        (sd / "boxed").mkdir(exist_ok=True)
        from PIL import Image

        for sc in scenes:
            mine = by_image.get(sc["image"], [])
            mc = [q for q in mine if q.task in ("Count", "Relation")]
            short = _short_questions(sc, rng, P.relation_margin)
            turns_list = []
            order_mc = list(rng.permutation(len(mc)))
            order_sa = list(rng.permutation(len(short)))
            for _ in range(turns):
                use_short = (rng.random() < short_ratio and order_sa) or not order_mc
                if use_short and order_sa:
                    qq, aa = short[order_sa.pop()]
                    turns_list.append((with_instruction(qq, SHORT), aa))
                    kinds["short"] += 1
                elif order_mc:
                    q = mc[order_mc.pop()]
                    turns_list.append(
                        (with_instruction(format_prompt(q.question, q.choices), LETTER), letter(q.answer_index))
                    )
                    kinds[f"mc_{q.task.lower()}"] += 1
            if rng.random() < detail_prob:
                turns_list.append((DETAIL_PROMPTS[int(rng.integers(len(DETAIL_PROMPTS)))], detailed_description(sc)))
                kinds["detail"] += 1
            if turns_list:
                conv = []
                for t, (qq, aa) in enumerate(turns_list):
                    conv += [
                        {"from": "human", "value": ("<image>\n" if t == 0 else "") + qq},
                        {"from": "gpt", "value": aa},
                    ]
                records.append({"id": f"{sc['scene_id']}-inst", "image": sc["image"], "conversations": conv})
            img = None
            for k, q in enumerate(q for q in mine if q.task in ("Depth", "Distance")):
                img = img or Image.open(sd / sc["image"]).convert("RGB")
                rel = f"boxed/{sc['scene_id']}_{q.task.lower()}_{k}.png"
                draw_boxes(img, q.boxes, P.box_width).save(sd / rel, compress_level=1)
                records.append(
                    {
                        "id": f"{sc['scene_id']}-{q.task.lower()}-{k}",
                        "image": rel,
                        "conversations": [
                            {
                                "from": "human",
                                "value": "<image>\n" + with_instruction(format_prompt(q.question, q.choices), LETTER),
                            },
                            {"from": "gpt", "value": letter(q.answer_index)},
                        ],
                    }
                )
                kinds[f"mc_{q.task.lower()}"] += 1
    else:
        raise InputError(f"stage must be 1 or 2, got {stage!r}")
    atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return {"records": len(records), "turns": dict(kinds), "stage": stage, "out": str(out_path)}
