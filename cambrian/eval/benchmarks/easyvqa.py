"""easy-VQA (the ``easy-vqa`` PyPI package: 64x64 images of one coloured shape, 13 possible answers), exact match.

Data: the package's test split (1000 images, 9673 questions) when no path is given, else a directory in the same
layout: ``questions.json`` (a list of ``[question, answer, image_id]``) and ``images/<image_id>.png``.

Options: ``max_images`` (default None = all) keeps every question of that many images, drawn with ``seed``
(default 0) — a smaller test set whose images are shared by ~10 questions each, so tower features are computed
once per image.

Prompt: ``question + "\\nAnswer the question using a single word or phrase."``; max_new_tokens 16 (every answer is
one word). Answer: lower-case, strip, rstrip "."; exact match. ``meta["category"]`` is the answer type
(``yes/no``, ``shape``, ``color``), scored per type as well.

Chance: guessing uniformly among the answers of the question's type gives 1/2 (yes/no), 1/3 (circle, rectangle,
triangle) and 1/8 (8 colours); over the whole test split (74% yes/no, 13% shape, 13% colour) that is 0.43
(``Benchmark.chance``); ``score`` also reports ``chance`` for the questions actually loaded. (Guessing among all 13
answers would give 1/13, but every question states its type.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...prompts import SHORT
from ...typed import Int, OptInt
from ..api import Benchmark, EvalSample, MCOptions, register_benchmark
from ._common import lazy_image, mean

SHAPES = ("circle", "rectangle", "triangle")
YES_NO = ("yes", "no")
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
TYPE_CHANCE = {"yes/no": 1 / 2, "shape": 1 / 3, "color": 1 / 8}
TYPE_ANSWERS = {"yes/no": YES_NO, "shape": SHAPES, "color": COLORS}


def answer_type(answer: str) -> str:
    a = answer.strip().lower()
    return "yes/no" if a in YES_NO else "shape" if a in SHAPES else "color"


def package_test_dir() -> Path:
    """``easy_vqa/data/test`` of the installed package (clear error when it is missing)."""
    try:
        import easy_vqa
    except ImportError as e:
        raise FileNotFoundError(
            "easyvqa: no data path given and the `easy-vqa` package is not installed (pip install easy-vqa)"
        ) from e
    return Path(easy_vqa.__file__).parent / "data" / "test"


def read_split(root: str | Path) -> list[tuple[str, str, int]]:
    root = Path(root)
    qfile = root / "questions.json"
    if not qfile.is_file():
        raise FileNotFoundError(f"easyvqa: {qfile} not found (expected questions.json and images/ in {root})")
    data = json.loads(qfile.read_text(encoding="utf-8"))
    out = []
    for k, row in enumerate(data):
        if not isinstance(row, (list, tuple)) or len(row) != 3:
            raise InputError(f"easyvqa: {qfile} row {k} is not [question, answer, image_id]: {row!r}")
        out.append((str(row[0]), str(row[1]), int(row[2])))
    return out


def normalize(text: str | None) -> str:
    return (text or "").strip().lower().rstrip(".").strip()


@register_benchmark("easyvqa")
class EasyVQA(Benchmark):
    category = "Other"
    max_new_tokens = 16
    primary_metric = "accuracy"
    metric_name = "exact match"
    chance = 0.43
    options = {"max_images": None, "seed": 0}
    option_types = {"max_images": OptInt(ge=1), "seed": Int(ge=0)}

    def load(self, path: str | None) -> list[EvalSample]:
        root = Path(path) if path is not None else package_test_dir()
        rows = read_split(root)
        keep = None
        if self.opts.get("max_images"):
            ids = sorted({r[2] for r in rows})
            rng = np.random.default_rng(int(self.opts.get("seed") or 0))
            keep = set(int(i) for i in rng.permutation(ids)[: int(self.opts["max_images"])])
        out = []
        for k, (q, a, image_id) in enumerate(rows):
            if keep is not None and image_id not in keep:
                continue
            out.append(
                EvalSample(
                    idx=k,
                    prompt=f"{q}\n{SHORT}",
                    images=[lazy_image(f"images/{image_id}.png", root)],
                    answer=a,
                    meta={"category": answer_type(a), "image_id": image_id},
                )
            )
        if not out:
            raise InputError(f"easyvqa: no questions loaded from {root}")
        return out

    def extract(self, sample: EvalSample, prediction: str):
        return normalize(prediction)

    def mc_options(self, sample: EvalSample) -> MCOptions:
        """Every question states its answer type: the candidates are that type's answers."""
        return MCOptions(TYPE_ANSWERS[sample.meta["category"]])

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        scores, by = [], {}
        for s in samples:
            ok = float(normalize(predictions.get(s.idx)) == normalize(s.answer)) if s.idx in predictions else 0.0
            scores.append(ok)
            by.setdefault(s.meta["category"], []).append(ok)
        return {
            "accuracy": mean(scores),
            "per_category": {k: mean(v) for k, v in sorted(by.items())},
            "n_per_category": {k: len(v) for k, v in sorted(by.items())},
            "chance": mean([TYPE_CHANCE[s.meta["category"]] for s in samples]),
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
