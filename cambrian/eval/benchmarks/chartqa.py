"""ChartQA test (``lmms-lab/ChartQA``), relaxed accuracy.

Expected files under ``DIR/chartqa``: ``*.parquet``/``*.jsonl`` with columns ``type`` (``human_test`` /
``augmented_test``), ``question``, ``answer``, ``image``.

Prompt: ``question + "\\nAnswer the question using a single number or phrase."``; max_new_tokens 128.
Official scorer (default, the paper's number): prediction and ground truth lower-cased; when both parse with
Python's ``float`` the prediction is right within 5 % of the ground truth, otherwise only on exact string
equality. Nothing is stripped: "45%" vs 45, "1,234" vs 1234 and "Brazil." vs Brazil are wrong.
Lenient scorer (``accuracy_lenient``): also strips "%", "$", thousands separators and a trailing period.
``accuracy`` is over all rows; ``per_category`` splits human / augmented.
"""

from __future__ import annotations

from ...prompts import SHORT_NUMBER, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import official_relaxed, relaxed_match
from ._common import TableBenchmark, lazy_image


@register_benchmark("chartqa")
class ChartQA(TableBenchmark):
    category = "OCR & Chart"
    max_new_tokens = 128
    hub_id = "lmms-lab/ChartQA"
    metric_name = "relaxed accuracy (5%)"

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT_NUMBER)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]),
            meta={"category": row.get("type")},
        )

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower()  # the official decode strips; the scorer lower-cases

    def is_correct(self, sample, extracted):
        return float(official_relaxed(extracted, sample.answer.lower()))

    def is_correct_lenient(self, sample, extracted):
        return float(relaxed_match(extracted, sample.answer))
