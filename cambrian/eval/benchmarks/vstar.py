"""V*Bench (Wu & Xie, "V*: Guided Visual Search as a Core Mechanism in Multimodal LLMs"; ``craigwu/vstar_bench``),
read from its released layout::

    DIR/direct_attributes/<name>.jpg  + <name>.json     (115 attribute questions)
    DIR/relative_position/<name>.jpg  + <name>.json     (76 spatial questions)

Each JSON: ``{"target_object": [...], "bbox": [[x, y, w, h], ...], "question": "...", "options": [...]}``, the
first option correct. An image is paired with the JSON of the same stem (any image extension); a JSON without an
image, or one missing a field, is one ``error:`` naming the file.

V*'s protocol is option likelihood: every option text scored as the answer, the most likely one chosen
(``cambrian eval run --mc likelihood``: its ``likelihood_text`` reading). For generation (Cambrian's own protocol)
the prompt lists the options as ``(A) ...`` lines in a per-question order drawn from a hash of its id (the stored
order would put every answer at A) and asks for the letter; scored by MCQ extraction (first character) against the
letter of the correct option. Metrics: ``accuracy`` (overall, over all questions as V*'s script), ``attribute``
(direct_attributes), ``spatial`` (relative_position), and ``chance``. ``targets`` in each sample's meta carry the
annotated boxes (``[x0, y0, x1, y1]`` pixels) so a search can be scored.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...prompts import LETTER, letters, paren_option_lines, with_instruction
from ..api import Benchmark, EvalSample, MCOptions, register_benchmark
from ..rules import mcq_extract
from ._common import lazy_image, mean

CATEGORIES = {"direct_attributes": "attribute", "relative_position": "spatial"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FIELDS = ("target_object", "bbox", "question", "options")


def option_order(idx: str, n: int) -> list[int]:
    """The order the options of question ``idx`` are shown in (the stored order puts the answer first)."""
    rng = np.random.default_rng(zlib.crc32(idx.encode()))
    return [int(i) for i in rng.permutation(n)]


def read_item(json_path: Path) -> tuple[dict, Path]:
    try:
        ann = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"vstar: {json_path}: not readable JSON ({e})") from None
    if not isinstance(ann, dict):
        raise InputError(f"vstar: {json_path}: expected an object")
    missing = [f for f in FIELDS if f not in ann]
    if missing:
        raise InputError(f"vstar: {json_path} lacks {missing}")
    if not isinstance(ann["options"], list) or len(ann["options"]) < 2:
        raise InputError(f"vstar: {json_path}: options must be a list of at least two answers")
    if len(ann["target_object"]) != len(ann["bbox"]):
        raise InputError(f"vstar: {json_path}: {len(ann['target_object'])} targets but {len(ann['bbox'])} boxes")
    images = [p for p in sorted(json_path.parent.glob(json_path.stem + ".*")) if p.suffix.lower() in IMAGE_EXTS]
    if not images:
        raise InputError(f"vstar: {json_path}: no image {json_path.stem}.jpg (or .png, ...) beside it")
    return ann, images[0]


@register_benchmark("vstar")
class VStarBench(Benchmark):
    category = "Vision-Centric"
    max_new_tokens = 32
    primary_metric = "accuracy"
    hub_id = "craigwu/vstar_bench"
    metric_name = "accuracy (attribute + spatial)"

    def load(self, path: str | None) -> list[EvalSample]:
        if path is None:
            raise FileNotFoundError(
                "vstar: give the folder of the released V*Bench (direct_attributes/ and relative_position/)"
            )
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"vstar: {root} is not a directory")
        present = [c for c in CATEGORIES if (root / c).is_dir()]
        if not present:
            raise FileNotFoundError(f"vstar: {root} has neither direct_attributes/ nor relative_position/")
        out = []
        for cat in present:
            for jp in sorted((root / cat).glob("*.json")):
                ann, image = read_item(jp)
                idx = f"{cat}/{jp.stem}"
                order = option_order(idx, len(ann["options"]))
                shown = [str(ann["options"][k]) for k in order]
                keys = letters(len(shown))
                prompt = with_instruction(str(ann["question"]) + paren_option_lines(shown), LETTER)
                targets = [
                    {"name": str(name), "box": [float(b[0]), float(b[1]), float(b[0] + b[2]), float(b[1] + b[3])]}
                    for name, b in zip(ann["target_object"], ann["bbox"])
                ]
                out.append(
                    EvalSample(
                        idx=idx,
                        prompt=prompt,
                        images=[lazy_image(str(image))],
                        answer=keys[order.index(0)].lower(),
                        meta={
                            "category": CATEGORIES[cat],
                            "question": str(ann["question"]),
                            "options": shown,
                            "letters": keys,
                            "targets": targets,
                        },
                    )
                )
        if not out:
            raise InputError(f"vstar: no questions (*.json) under {root}")
        return out

    def extract(self, sample: EvalSample, prediction: str) -> str:
        return mcq_extract(prediction)

    def mc_options(self, sample: EvalSample) -> MCOptions:
        return MCOptions(tuple(sample.meta["options"]), tuple(sample.meta["letters"]))

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        by = defaultdict(list)
        for s in samples:
            ok = float(s.idx in predictions and self.answer(s, predictions[s.idx]) == s.answer)
            by[s.meta["category"]].append(ok)
        return {
            "accuracy": mean([v for vs in by.values() for v in vs]),
            "attribute": mean(by["attribute"]),
            "spatial": mean(by["spatial"]),
            "chance": mean([1.0 / len(s.meta["options"]) for s in samples]),
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
