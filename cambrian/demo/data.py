"""The demo's data: scenes (train / test), CV-Bench-Synth (official rules, from the test scenes), stage-1 captions,
stage-2 multi-turn instruction records (CV-Bench-style questions + easy-VQA), and the easy-VQA test subset.

Compute is the constraint on a CPU (the LLM processes ~120-180 tokens/s in training), so a stage-2 record packs
*several* questions about one image into one multi-turn conversation: the 72 visual tokens and the system prompt
are paid once for several supervised answers (each a single letter or word + the end-of-turn token).

Scene questions come from the same builder as CV-Bench-Synth (``questions_from_coco`` / ``questions_from_omni3d``:
same templates, rules, option shuffling, so answer letters are balanced) on *train* scenes only. Depth and
Distance questions name their objects and CV-Bench draws coloured boxes on them; a training record draws the boxes
of one of its 3D questions on its image (with probability ``box_prob``), the other questions of the record are
asked about the same image.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..cvbench.builder import BuildParams, questions_from_coco, questions_from_omni3d
from ..cvbench.schema import format_prompt
from ..cvbench.writer import draw_boxes
from ..prompts import LETTER, SHORT, letter, with_instruction
from ..utils.io import atomic_write_text

# The demo's scene world (the scene config is the demo's choice; the CV-Bench rules stay the official ones):
# 3-6 objects of 6 clearly distinct colours (no gray on the gray floor, no brown next to red/yellow), the camera
# a little closer than the engine default so small objects still cover a few of the 8x8 SVA cells at 256 px, and
# fewer duplicated colour+shape pairs (dup_prob 0.2) so more objects are unique, which Relation / Depth / Distance
# questions need.
SCENE_CONFIG = {
    "width": 256,
    "height": 256,
    "min_objects": 3,
    "max_objects": 6,
    "colors": ["red", "blue", "green", "yellow", "purple", "cyan"],
    "arena_radius": 2.2,
    "cam_distance": [5.5, 7.0],
    "dup_prob": 0.2,
}

# Training questions per image and task (more than CV-Bench-Synth's 2/1/1/1 per image: the extra questions cost
# only their own tokens inside a packed record). 3D questions are rarer per scene (they need unique objects at
# clearly different depths) and weigh half of the official overall score, so they get the larger caps.
TRAIN_QUESTIONS = {"Count": 3, "Relation": 3, "Depth": 4, "Distance": 4}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _conversation(turns: list[tuple[str, str]]) -> list[dict]:
    conv = []
    for t, (q, a) in enumerate(turns):
        conv += [{"from": "human", "value": ("<image>\n" if t == 0 else "") + q}, {"from": "gpt", "value": a}]
    return conv


def scene_question_records(
    scene_dir: str | os.PathLike,
    seed: int = 0,
    variants: int = 1,
    box_prob: float = 0.6,
    max_turns: int = 10,
    per_task: dict | None = None,
    attribute_turns: int = 0,
    colors: tuple | None = None,
    reasoning: bool = False,
    grid: int = 8,
    position_turns: int = 0,
) -> tuple[list[dict], dict]:
    """Packed multi-turn records from a *train* scene dir: up to ``attribute_turns`` lookup questions (the colour of
    the only sphere, ...: the synth-attribute templates, short answers) first, then CV-Bench-style questions, at most
    ``max_turns`` in all. ``variants`` records per scene (each with its own question draw). Images are relative to
    ``scene_dir`` (boxed copies under ``scene_dir/boxed_demo/``). ``reasoning``: Relation and Depth answers are
    worked ("x: red cube 2, blue sphere 6. The answer is (A)", :func:`cambrian.data.scenes.positions.reasoned_answer`
    on a ``grid`` x ``grid`` grid) instead of the bare letter. ``position_turns``: up to that many direct position
    lookups ("In which column ... is the red cube?" -> "three",
    :func:`cambrian.data.scenes.positions.position_questions`) after the attribute lookups. Returns (records, per-task answer counts)."""
    from ..data.scenes.attributes import attribute_questions
    from ..data.scenes.positions import position_questions
    from ..data.scenes.render import read_scenes

    scenes = {sc["image"]: sc for sc in read_scenes(scene_dir)}
    from PIL import Image

    sd = Path(scene_dir)
    coco = json.loads((sd / "annotations" / "coco.json").read_text(encoding="utf-8"))
    omni = json.loads((sd / "annotations" / "omni3d.json").read_text(encoding="utf-8"))
    params = BuildParams.from_dict({"count_supercategories": True, "max_per_image": dict(per_task or TRAIN_QUESTIONS)})
    (sd / "boxed_demo").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 11])
    prng = np.random.default_rng([seed, 23])
    records, counts = [], defaultdict(int)
    for v in range(variants):
        qs = questions_from_coco(coco, params, seed * 1000 + v, source="Synth2D") + questions_from_omni3d(
            omni, params, seed * 1000 + v, source="Synth3D"
        )
        by_image = defaultdict(list)
        for q in qs:
            by_image[q.image].append(q)
        for image in sorted(by_image):
            mine = [by_image[image][i] for i in rng.permutation(len(by_image[image]))][:max_turns]
            three_d = [q for q in mine if q.task in ("Depth", "Distance")]
            rel = image
            if three_d and rng.random() < box_prob:
                q = three_d[int(rng.integers(len(three_d)))]
                rel = f"boxed_demo/{Path(image).stem}_v{v}.png"
                with Image.open(sd / image) as im:
                    draw_boxes(im, q.boxes, params.box_width).save(sd / rel, compress_level=1)
            attr = attribute_questions(scenes[image], colors) if attribute_turns and image in scenes else []
            attr = [attr[i] for i in rng.permutation(len(attr))][:attribute_turns]
            if position_turns and image in scenes:  # their own generator: the other turns stay the same draws
                where = position_questions(scenes[image], grid)
                attr += [where[i] for i in prng.permutation(len(where))][:position_turns]
            turns = [(f"{a['question']}\n{SHORT}", a["answer"]) for a in attr]
            turns += [
                (
                    with_instruction(format_prompt(q.question, q.choices), LETTER),
                    _answer(q, scenes.get(image), reasoning, grid),
                )
                for q in mine
            ]
            turns = turns[:max_turns]
            for a in attr[:max_turns]:
                counts[f"{'position' if a['type'] in ('column', 'row') else 'attribute'}_{a['type']}"] += 1
            for q in mine[: max(0, max_turns - len(attr))]:
                counts[q.task] += 1
            records.append({"id": f"{Path(image).stem}-v{v}", "image": rel, "conversations": _conversation(turns)})
    return records, dict(counts)


def _answer(q, scene: dict | None, reasoning: bool, grid: int) -> str:
    """The letter, or with ``reasoning`` the worked answer where the task has one."""
    from ..data.scenes.positions import reasoned_answer

    worked = (
        reasoned_answer(q.task, q.question, q.choices, q.answer_index, scene, grid, q.target_class)
        if reasoning and scene
        else None
    )
    return worked or letter(q.answer_index)


def _easyvqa_train(seed: int):
    """easy-VQA's train split: (questions by image id, image paths, image ids in this seed's order)."""
    import easy_vqa

    texts, answers, image_ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    by_image = defaultdict(list)
    for q, a, i in zip(texts, answers, image_ids):
        by_image[int(i)].append((q, a))
    order = [int(i) for i in np.random.default_rng([seed, 13]).permutation(sorted(by_image))]
    return by_image, paths, order


def easyvqa_records(n_images: int, seed: int = 0, max_turns: int = 6, offset: int = 0) -> tuple[list[dict], dict]:
    """Packed records from easy-VQA's *train* split (absolute image paths): up to ``max_turns`` questions of one
    image per record, yes/no answers balanced within the record where the image allows it. Images
    ``order[offset : offset + n_images]`` of the seed's fixed order."""
    by_image, paths, order = _easyvqa_train(seed)
    rng = np.random.default_rng([seed, 13])
    records, counts = [], defaultdict(int)
    for i in order[offset : offset + n_images]:
        qa = by_image[int(i)]
        yes = [x for x in qa if x[1] == "yes"]
        no = [x for x in qa if x[1] == "no"]
        other = [x for x in qa if x[1] not in ("yes", "no")]
        k = max(1, (max_turns - len(other)) // 2)
        pick = other + [yes[j] for j in rng.permutation(len(yes))[:k]] + [no[j] for j in rng.permutation(len(no))[:k]]
        pick = [pick[j] for j in rng.permutation(len(pick))][:max_turns]
        for _, a in pick:
            counts[
                "yes/no" if a in ("yes", "no") else "shape" if a in ("circle", "rectangle", "triangle") else "color"
            ] += 1
        records.append(
            {
                "id": f"easyvqa-{int(i)}",
                "image": paths[int(i)],
                "conversations": _conversation([(f"{q}\n{SHORT}", a) for q, a in pick]),
            }
        )
    return records, dict(counts)


def write_stage2(
    out_path: str | os.PathLike,
    scene_dir: str | os.PathLike,
    *,
    seed: int = 0,
    variants: int = 1,
    easyvqa_images: int = 0,
    box_prob: float = 0.6,
    max_turns: int = 10,
    attribute_turns: int = 0,
    easyvqa_offset: int = 0,
    reasoning: bool = False,
    grid: int = 8,
    position_turns: int = 0,
) -> dict:
    """Stage-2 JSONL: scene records (images relative to ``scene_dir``; written as absolute paths so one file can
    mix sources) + easy-VQA records, shuffled. Returns counts."""
    sd = Path(scene_dir).resolve()
    recs, counts = scene_question_records(
        sd,
        seed,
        variants,
        box_prob,
        max_turns,
        attribute_turns=attribute_turns,
        colors=tuple(SCENE_CONFIG["colors"]),
        reasoning=reasoning,
        grid=grid,
        position_turns=position_turns,
    )
    for r in recs:
        r["image"] = str(sd / r["image"])
    ev, ev_counts = easyvqa_records(easyvqa_images, seed, offset=easyvqa_offset) if easyvqa_images else ([], {})
    allr = recs + ev
    rng = np.random.default_rng([seed, 17])
    allr = [allr[i] for i in rng.permutation(len(allr))]
    _write_jsonl(Path(out_path), allr)
    return {
        "records": len(allr),
        "scene_records": len(recs),
        "easyvqa_records": len(ev),
        "answers": {**counts, **{f"easyvqa_{k}": v for k, v in ev_counts.items()}},
    }


def easyvqa_grounding_records(
    n_images: int, grid: int, seed: int = 0, background: str = "background", split_words: bool = False
) -> list[dict]:
    """Grounding records for the first ``n_images`` easy-VQA *train* images (in the seed's order) whose questions name
    both their colour and shape: the shape's cells (pixels away from the
    uniform background colour) get "<colour> <shape>" (from the image's own answers), the others ``background``."""
    from PIL import Image

    from ..data.grounding import cells_from_mask
    from ..eval.benchmarks.easyvqa import answer_type

    by_image, paths, order = _easyvqa_train(seed)
    out = []
    for i in order:
        if len(out) >= n_images:
            break
        kinds = {answer_type(a): a for _, a in by_image[i]}
        if "color" not in kinds or "shape" not in kinds:  # the image's own answers must name both
            continue
        with Image.open(paths[i]) as im:
            px = np.asarray(im.convert("RGB")).astype(np.int16)
        fg = (np.abs(px - px[0, 0]).max(-1) > 40).astype(np.int64)  # 1 = the shape
        cells = cells_from_mask(
            fg, {1: f"{kinds['color']} {kinds['shape']}"}, grid, background=background, split_words=split_words
        )
        out.append({"id": f"ground-easyvqa-{i}", "image": paths[i], "grounding": cells})
    return out


def write_grounding(
    out_path: str | os.PathLike,
    scene_dir: str | os.PathLike,
    grid: int,
    *,
    seed: int = 0,
    easyvqa_images: int = 0,
    split_words: bool = False,
    count_words: bool = False,
    position_words: bool = False,
    position_of: str = "centre",
) -> dict:
    """Grounding JSONL: one record per train scene (object words per cell, "floor" elsewhere) + easy-VQA train
    images (colour and shape words on the shape's cells), shuffled."""
    from ..data.scenes.grounding import scene_grounding_records

    recs = scene_grounding_records(
        scene_dir,
        grid,
        split_words=split_words,
        count_words=count_words,
        position_words=position_words,
        position_of=position_of,
    )
    ev = easyvqa_grounding_records(easyvqa_images, grid, seed, split_words=split_words) if easyvqa_images else []
    allr = recs + ev
    allr = [allr[i] for i in np.random.default_rng([seed, 19]).permutation(len(allr))]
    _write_jsonl(Path(out_path), allr)
    cells = [c for r in allr for c, w in zip(r["grounding"]["cells"], r["grounding"]["weights"]) if w > 0]
    return {
        "records": len(allr),
        "scene_records": len(recs),
        "easyvqa_records": len(ev),
        "grid": grid,
        "object_cells": sum(1 for r in allr for w in r["grounding"]["weights"] if w > 1),
        "target_cells": len(cells),
    }


def write_stage1(
    out_path: str | os.PathLike, scene_dir: str | os.PathLike, *, seed: int = 0, n: int | None = None
) -> dict:
    """Stage-1 caption JSONL (``make_llava_data(stage=1)``) with absolute image paths, first ``n`` records."""
    from ..cvbench.training_data import make_llava_data
    from ..utils.io import read_jsonl

    sd = Path(scene_dir).resolve()
    tmp = Path(out_path).with_suffix(".all.jsonl")
    make_llava_data(sd, tmp, stage=1, seed=seed)
    recs = list(read_jsonl(tmp))[: n if n else None]
    tmp.unlink()
    for r in recs:
        r["image"] = str(sd / r["image"])
    _write_jsonl(Path(out_path), recs)
    return {"records": len(recs)}


def image_paths(jsonl: str | os.PathLike) -> list[str]:
    from ..utils.io import read_jsonl

    out = []
    for r in read_jsonl(jsonl):
        ims = r.get("image")
        out += ims if isinstance(ims, list) else [ims] if ims else []
    return sorted(set(out))
