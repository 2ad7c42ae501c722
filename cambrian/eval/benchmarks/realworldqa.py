"""RealWorldQA (``lmms-lab/RealWorldQA`` test, 765 questions).

Expected files under ``DIR/realworldqa``: ``*.parquet``/``*.jsonl`` with columns ``question`` (already holding
its options and answer instruction), ``answer``, ``image``.

Prompt: the question as given (the official script appends nothing); max_new_tokens 512.
Official scorer (default): after the answer keywords, strip, ``rstrip(".")`` of the whole answer, then its first
word — "A." is "a", but "A. Left" is "a." and wrong; compared with the lower-cased ground truth. An empty
prediction is wrong (the official ``split()[0]`` raises IndexError there, docs/official-code.md#bugs B8).
Lenient scorer (``accuracy_lenient``): also strips "." from the first word and from the ground truth.
"""

from __future__ import annotations

from ..api import EvalSample, register_benchmark
from ..rules import keyword_extract, official_keyword
from ._common import TableBenchmark, lazy_image, options_in_prompt


@register_benchmark("realworldqa")
class RealWorldQA(TableBenchmark):
    category = "Vision-Centric"
    max_new_tokens = 512
    hub_id = "lmms-lab/RealWorldQA"

    def build_prompt(self, row):
        return str(row["question"])

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]),
            meta={},
        )

    def mc_options(self, sample):
        """Questions whose answer is an option letter list their options in the prompt; the others are open."""
        a = sample.answer.strip()
        return options_in_prompt(sample.prompt) if len(a) == 1 and a.isalpha() else None

    def extract(self, sample, prediction):
        words = official_keyword(prediction).split()
        return words[0] if words else ""

    def is_correct(self, sample, extracted):
        return float(extracted == sample.answer.lower())

    def extract_lenient(self, sample, prediction):
        words = keyword_extract(prediction).split()
        return words[0].rstrip(".") if words else ""

    def is_correct_lenient(self, sample, extracted):
        return float(extracted == sample.answer.strip().lower().rstrip("."))
