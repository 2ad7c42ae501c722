"""synth-attribute: lookup questions about rendered test scenes (the colour of the only sphere, the shape of the only
red object), built by :func:`build_synth_attribute` from a scene split (``cambrian.data.scenes``). Reported next to
CV-Bench-Synth, never mixed into its official score.

Layout: ``questions.jsonl`` (``{"id", "image", "question", "answer", "type", "choices", "scene"}``, ``image``
relative to the file) + ``images/``. Answers are balanced within each type (every answer that occurs is kept
as often as the rarest one). Prompt: ``question + "\\nAnswer the question using a single word or phrase."``.
Scoring: lower-case, strip, rstrip "."; correct when the answer equals the truth or its first word does ("red
sphere" answers "What color is the sphere?"). ``chance`` = mean of 1 / len(choices).
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
from ...utils.io import atomic_write_text, read_jsonl
from ..api import Benchmark, EvalSample, MCOptions, register_benchmark
from ._common import lazy_image, mean

QUESTIONS = "questions.jsonl"


def build_synth_attribute(
    scene_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    colors: Sequence[str] | None = None,
    shapes: Sequence[str] | None = None,
) -> dict:
    """Write the benchmark from a (test) scene split; returns ``{"n", "per_type", "answers"}``."""
    from ...data.scenes.attributes import TYPES, attribute_questions
    from ...data.scenes.render import read_scenes

    sd, out = Path(scene_dir), Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    by = defaultdict(list)
    for sc in read_scenes(sd):
        for q in attribute_questions(sc, tuple(colors) if colors else None, tuple(shapes) if shapes else None):
            by[(q["type"], q["answer"])].append({**q, "scene": sc["scene_id"], "src": sc["image"]})
    rng = np.random.default_rng([seed, 31])
    rows, answers = [], {}
    for t in TYPES:
        groups = {a: qs for (tt, a), qs in sorted(by.items()) if tt == t}
        if not groups:
            continue
        cap = min(len(v) for v in groups.values())
        for a, qs in groups.items():
            rows += [qs[i] for i in sorted(rng.permutation(len(qs))[:cap])]
            answers[f"{t}:{a}"] = cap
    lines = []
    for k, r in enumerate(rows):
        name = Path(r["src"]).name
        if not (out / "images" / name).exists():
            shutil.copyfile(sd / r["src"], out / "images" / name)
        lines.append(
            json.dumps(
                {
                    "id": k,
                    "image": f"images/{name}",
                    "question": r["question"],
                    "answer": r["answer"],
                    "type": r["type"],
                    "choices": r["choices"],
                    "scene": r["scene"],
                }
            )
            + "\n"
        )
    atomic_write_text(out / QUESTIONS, "".join(lines))
    per_type = {t: sum(1 for r in rows if r["type"] == t) for t in TYPES}
    return {"n": len(rows), "per_type": per_type, "answers": answers}


def normalize(text: str | None) -> str:
    return (text or "").strip().lower().rstrip(".").strip()


def is_correct(prediction: str | None, answer: str) -> bool:
    p, a = normalize(prediction), normalize(answer)
    return p == a or (p.split()[:1] == [a])


@register_benchmark("synth-attribute")
class SynthAttribute(Benchmark):
    category = "Vision-Centric"
    max_new_tokens = 8
    primary_metric = "accuracy"
    metric_name = "exact match (first word)"
    chance = None

    def load(self, path: str | None) -> list[EvalSample]:
        if path is None:
            raise FileNotFoundError(
                "synth-attribute: give the directory written by build_synth_attribute (no hub copy)"
            )
        root = Path(path)
        f = root / QUESTIONS
        if not f.is_file():
            raise FileNotFoundError(f"synth-attribute: {f} not found")
        out = []
        for k, r in enumerate(read_jsonl(f)):
            missing = [x for x in ("id", "image", "question", "answer", "type", "choices") if x not in r]
            if missing:
                raise InputError(f"synth-attribute: {f} line {k + 1} lacks {missing}")
            out.append(
                EvalSample(
                    idx=r["id"],
                    prompt=f"{r['question']}\n{SHORT}",
                    images=[lazy_image(r["image"], root)],
                    answer=r["answer"],
                    meta={"category": r["type"], "choices": r["choices"], "scene": r.get("scene")},
                )
            )
        if not out:
            raise InputError(f"synth-attribute: no questions in {f}")
        return out

    def extract(self, sample: EvalSample, prediction: str):
        return normalize(prediction)

    def mc_options(self, sample: EvalSample) -> MCOptions:
        return MCOptions(tuple(sample.meta["choices"]))

    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        scores, by = [], defaultdict(list)
        for s in samples:
            ok = float(is_correct(predictions.get(s.idx), s.answer)) if s.idx in predictions else 0.0
            scores.append(ok)
            by[s.meta["category"]].append(ok)
        return {
            "accuracy": mean(scores),
            "per_type": {k: mean(v) for k, v in sorted(by.items())},
            "chance": mean([1.0 / len(s.meta["choices"]) for s in samples]),
            "chance_per_type": {
                k: mean([1.0 / len(s.meta["choices"]) for s in samples if s.meta["category"] == k]) for k in sorted(by)
            },
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
