"""synth-chart: questions about bar and line charts drawn with matplotlib (``cambrian.data.synth.chart``): "What is
the value of the red bar?", "Which bar is the highest?", "What is the last value of the blue line?", "Which line
ends higher?". An offline stand-in for the paper's OCR & Chart group at nano scale; reported apart from the
paper's table.

:func:`build_synth_chart` renders a test split into the benchmark directory (``images/``, ``items.jsonl``,
``questions.jsonl``). Scoring (the synthetic short-answer form, ``_synth.py``): value questions (``bar_value``,
``line_value``; chance 1/9) are right when the first integer of the answer (digits, or a number word first) is the
value; colour questions (``bar_max``, ``bar_min``, ``line_max``; chance 1 / colours in the chart) when the answer's
first word is the colour.
"""

from __future__ import annotations

import os

from ..api import EvalSample, register_benchmark
from ._synth import SynthQA, first_number, first_word, normalize, write_questions

VALUE_TYPES = ("bar_value", "line_value")


def build_synth_chart(out_dir: str | os.PathLike, n_images: int, *, seed: int = 0) -> dict:
    """Render ``n_images`` test charts into ``out_dir`` and write its questions; returns counts per type."""
    from ...data.synth.chart import render_chart
    from ...data.synth.split import question_rows, write_split

    write_split(out_dir, n_images, seed, render_chart, split="test")
    rows = question_rows(out_dir)
    write_questions(out_dir, rows)
    types = sorted({r["type"] for r in rows})
    return {"n": len(rows), "per_type": {t: sum(r["type"] == t for r in rows) for t in types}}


@register_benchmark("synth-chart")
class SynthChart(SynthQA):
    category = "OCR & Chart"
    metric_name = "exact match (first integer / first word)"

    def is_correct(self, sample: EvalSample, prediction: str | None) -> bool:
        if sample.meta["category"] in VALUE_TYPES:
            return first_number(prediction) == normalize(sample.answer)
        return first_word(prediction) == normalize(sample.answer)
