"""synth-attribute: lookup questions about rendered test scenes (the colour of the only sphere, the shape of the only
red object), built by :func:`build_synth_attribute` from a scene split (``cambrian.data.scenes``). Reported next to
CV-Bench-Synth, never mixed into its official score.

Layout and prompt: the synthetic short-answer form (``_synth.py``): ``questions.jsonl`` + ``images/``. Answers are
balanced within each type (every answer that occurs is kept as often as the rarest one). Scoring: lower-case, strip,
rstrip "."; correct when the answer equals the truth or its first word does ("red sphere" answers "What color is
the sphere?"). ``chance`` = mean of 1 / len(choices).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...utils.io import atomic_write_text
from ..api import EvalSample, register_benchmark
from ._synth import QUESTIONS, SynthQA, normalize


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


def is_correct(prediction: str | None, answer: str) -> bool:
    p, a = normalize(prediction), normalize(answer)
    return p == a or (p.split()[:1] == [a])


@register_benchmark("synth-attribute")
class SynthAttribute(SynthQA):
    category = "Vision-Centric"
    metric_name = "exact match (first word)"

    def is_correct(self, sample: EvalSample, prediction: str | None) -> bool:
        return is_correct(prediction, sample.answer)
