"""TextVQA validation (``lmms-lab/textvqa``), VQA soft accuracy.

Expected files under ``DIR/textvqa``: ``*.parquet``/``*.jsonl`` with columns ``question_id``, ``question``,
``answers`` (the ten human answers), ``ocr_tokens`` (list of strings), ``image``.

Prompt (option ``ocr_tokens``, default True as in the official script, which puts the OCR tokens in the
prompt): ``question + "\\nReference OCR tokens: t1, t2, …" + "\\nAnswer the question using a single word or
phrase."``; with ``ocr_tokens=False`` the OCR line is left out. max_new_tokens 512 (official).
Metric: VQA soft accuracy after EvalAI normalisation.
"""

from __future__ import annotations

from ..api import EvalSample, register_benchmark
from ..extract import vqa_accuracy
from ...prompts import SHORT
from ._common import TableBenchmark, lazy_image


@register_benchmark("textvqa")
class TextVQA(TableBenchmark):
    category = "OCR & Chart"
    max_new_tokens = 512
    hub_id = "lmms-lab/textvqa"
    hub_split = "validation"
    metric_name = "VQA accuracy"
    options = {"ocr_tokens": True}

    def build_prompt(self, row):
        parts = [str(row["question"])]
        if self.opts["ocr_tokens"]:
            parts.append("Reference OCR tokens: " + ", ".join(str(t) for t in (row.get("ocr_tokens") or [])))
        parts.append(SHORT)
        return "\n".join(parts)

    def make_sample(self, i, row, base):
        return EvalSample(idx=str(row.get("question_id", i)), prompt=self.build_prompt(row),
                          images=[lazy_image(row["image"], base)], answer=list(row["answers"]), meta={})

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower()

    def is_correct(self, sample, extracted):
        return vqa_accuracy(extracted, sample.answer)
