"""OCRBench (``echo840/OCRBench``, 1000 questions), substring accuracy.

Expected files under ``DIR/ocrbench``: ``*.parquet``/``*.jsonl`` with columns ``dataset``, ``question``,
``question_type`` (one of the ten OCRBench categories), ``answer`` (list of strings, or one string), ``image``.

Prompt: ``question + "\\nGive the short answer directly."``; max_new_tokens 512.
Answer processing (official): lower-case, strip, newlines → spaces, and a sample is correct when some ground
truth is a substring of the prediction. For "Handwritten Mathematical Expression Recognition" case is kept and
all spaces are removed on both sides. ``accuracy`` = correct / n (the paper's OCRBench column is the
score out of 1000 divided by 10, i.e. the same number in percent); ``score`` = the raw count.
"""

from __future__ import annotations

from ...prompts import SHORT_DIRECT, with_instruction
from ..api import EvalSample, register_benchmark
from ._common import TableBenchmark, lazy_image

HME = "Handwritten Mathematical Expression Recognition"


@register_benchmark("ocrbench")
class OCRBench(TableBenchmark):
    category = "OCR & Chart"
    max_new_tokens = 512
    hub_id = "echo840/OCRBench"
    metric_name = "accuracy (gt substring of answer)"

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT_DIRECT)

    def make_sample(self, i, row, base):
        ans = row["answer"]
        ans = [ans] if isinstance(ans, str) else list(ans)
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=ans,
            meta={"category": row.get("question_type"), "dataset": row.get("dataset")},
        )

    @staticmethod
    def _norm(text: str, hme: bool) -> str:
        text = str(text).strip().replace("\n", " ")
        return text.replace(" ", "") if hme else text.lower()

    def extract(self, sample, prediction):
        return self._norm(prediction or "", sample.meta.get("category") == HME)

    def is_correct(self, sample, extracted):
        hme = sample.meta.get("category") == HME
        return float(any(self._norm(a, hme) in extracted for a in sample.answer))

    def score(self, samples, predictions):
        out = super().score(samples, predictions)
        out["score"] = int(round(out["accuracy"] * out["n"]))
        return out
