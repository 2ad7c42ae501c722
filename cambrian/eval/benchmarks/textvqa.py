"""TextVQA validation (``lmms-lab/textvqa``), VQA soft accuracy.

Expected files under ``DIR/textvqa``: ``*.parquet``/``*.jsonl`` with columns ``question_id``, ``question``,
``answers`` (the ten human answers), ``ocr_tokens`` (list of strings), ``image``.

Prompt (option ``ocr_tokens``, default True as in the official script, which puts the OCR tokens in the
prompt): ``question + "\\nReference OCR tokens:" + " t1" + ", t2" … + "\\nAnswer the question using a single word
or phrase."`` (no token: the line ends at the colon); with ``ocr_tokens=False`` the OCR line is left out.
max_new_tokens 512 (official).
Official scorer (default): the TextVQA (m4c / EvalAI) evaluator — answer processor with "," / "?" deleted,
"'s" split off, punctuation, number words, articles and its contraction table — and the soft accuracy over the
ten answers. Lenient scorer (``accuracy_lenient``): a shorter normaliser that keeps commas inside words, does
not split "'s" and knows fewer contractions.
"""

from __future__ import annotations

from ...prompts import SHORT, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import official_vqa_accuracy, vqa_accuracy
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
        q = str(row["question"])
        if self.opts["ocr_tokens"]:
            tokens = [str(t) for t in (row.get("ocr_tokens") or [])]
            q += "\nReference OCR tokens:" + (" " + ", ".join(tokens) if tokens else "")
        return with_instruction(q, SHORT)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=str(row.get("question_id", i)),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=list(row["answers"]),
            meta={},
        )

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower()

    def is_correct(self, sample, extracted):
        return official_vqa_accuracy(extracted, sample.answer)

    def is_correct_lenient(self, sample, extracted):
        return vqa_accuracy(extracted, sample.answer)
