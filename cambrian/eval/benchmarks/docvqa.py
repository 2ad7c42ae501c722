"""DocVQA validation (``lmms-lab/DocVQA``, config ``DocVQA``, split ``validation``), ANLS.

Expected files under ``DIR/docvqa``: ``*.parquet``/``*.jsonl`` with columns ``questionId``, ``question``,
``answers`` (list of strings), ``image`` (also ``docId``, ``question_types``, ... ignored).

Prompt: ``question + "\\nGive the short answer directly."``; max_new_tokens 128. The official pipeline only
writes a test-set submission for the RRC server; we score the public validation split locally.
Official scorer (default): the RRC / DocVQA evaluator's ANLS — edit distance of the whitespace-collapsed,
lower-cased strings divided by the longer *raw* string, ``1 - min NL`` kept unless it is below 0.5 (a distance of
exactly 0.5 scores 0.5). Lenient scorer (``anls_lenient``): divides by the normalised lengths and zeroes
``NL >= 0.5``. Either way the number is comparable in kind, not identical, to the paper's test-set DocVQA.
"""

from __future__ import annotations

from ...prompts import SHORT_DIRECT, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import anls, official_anls
from ._common import TableBenchmark, lazy_image


@register_benchmark("docvqa")
class DocVQA(TableBenchmark):
    category = "OCR & Chart"
    max_new_tokens = 128
    hub_id = "lmms-lab/DocVQA"
    hub_config = "DocVQA"
    hub_split = "validation"
    primary_metric = "anls"
    item_metric = "anls"
    metric_name = "ANLS (val)"

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT_DIRECT)

    def make_sample(self, i, row, base):
        answers = row.get("answers")
        answers = [answers] if isinstance(answers, str) else list(answers or [])
        return EvalSample(
            idx=str(row.get("questionId", i)),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=answers,
            meta={},
        )

    def extract(self, sample, prediction):
        return (prediction or "").strip()

    def is_correct(self, sample, extracted):
        return official_anls(extracted, sample.answer)

    def is_correct_lenient(self, sample, extracted):
        return anls(extracted, sample.answer)
