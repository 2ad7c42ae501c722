"""synth-text: "what word / number is written on the sign?" about rendered signs (``cambrian.data.synth.text``).
An offline stand-in for the paper's OCR & Chart group at nano scale; reported apart from the paper's table.

:func:`build_synth_text` renders a test split into the benchmark directory (``images/``, ``items.jsonl`` with what
was drawn, ``questions.jsonl``). Scoring (the synthetic short-answer form, ``_synth.py``): a word is right when the
answer, or its first word without quotes and punctuation, is the word (any case); a number when the first integer
in the answer is the number. Types ``word`` (chance 1/24) and ``number`` (chance 1/90).
"""

from __future__ import annotations

import os

from ..api import EvalSample, register_benchmark
from ._synth import SynthQA, first_number, first_word, normalize, write_questions


def build_synth_text(out_dir: str | os.PathLike, n_images: int, *, seed: int = 0) -> dict:
    """Render ``n_images`` test signs into ``out_dir`` and write its questions; returns counts per type."""
    from ...data.synth.split import question_rows, write_split
    from ...data.synth.text import render_sign

    write_split(out_dir, n_images, seed, render_sign, split="test")
    rows = question_rows(out_dir)
    write_questions(out_dir, rows)
    return {"n": len(rows), "per_type": {t: sum(r["type"] == t for r in rows) for t in ("word", "number")}}


@register_benchmark("synth-text")
class SynthText(SynthQA):
    category = "OCR & Chart"
    metric_name = "exact match (word, or first integer)"

    def is_correct(self, sample: EvalSample, prediction: str | None) -> bool:
        if sample.meta["category"] == "number":
            return first_number(prediction) == normalize(sample.answer)
        return normalize(prediction) == normalize(sample.answer) or first_word(prediction) == normalize(sample.answer)
