"""ChartQA test (``lmms-lab/ChartQA``), relaxed accuracy.

Expected files under ``DIR/chartqa``: ``*.parquet``/``*.jsonl`` with columns ``type`` (``human_test`` /
``augmented_test``), ``question``, ``answer``, ``image``.

Prompt: ``question + "\\nAnswer the question using a single number or phrase."``; max_new_tokens 128.
Metric: relaxed accuracy — numeric answers within 5 % of the ground truth, otherwise exact (case-insensitive)
match. The official local scorer does not strip "%" (spec §9.1 item 8); we strip "%", "$" and thousands
separators before the numeric comparison. ``accuracy`` is over all rows; ``per_category`` splits human /
augmented.
"""

from __future__ import annotations

from ..api import EvalSample, register_benchmark
from ..extract import relaxed_match
from ...prompts import SHORT_NUMBER
from ._common import TableBenchmark, lazy_image


@register_benchmark("chartqa")
class ChartQA(TableBenchmark):
    category = "OCR & Chart"
    max_new_tokens = 128
    hub_id = "lmms-lab/ChartQA"
    metric_name = "relaxed accuracy (5%)"

    def build_prompt(self, row):
        return f"{row['question']}\n{SHORT_NUMBER}"

    def make_sample(self, i, row, base):
        return EvalSample(idx=i, prompt=self.build_prompt(row), images=[lazy_image(row["image"], base)],
                          answer=str(row["answer"]), meta={"category": row.get("type")})

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower()

    def is_correct(self, sample, extracted):
        return float(relaxed_match(extracted, sample.answer))
