"""MMStar (``Lin-Chen/MMStar`` val, 1500 questions), multiple choice.

Expected files under ``DIR/mmstar``: ``*.parquet``/``*.jsonl`` with columns ``index``, ``question`` (options
included), ``answer`` (letter), ``category``, ``l2_category``, ``image``.

Prompt: ``question + "\\nPlease answer directly with only the letter of the correct option and nothing
else."``; max_new_tokens 128. Answer: first token, lower, rstrip ".:," (empty → "" and wrong, instead of the
official IndexError); exact letter.
"""

from __future__ import annotations

from ...prompts import LETTER_ONLY, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import first_token
from ._common import TableBenchmark, lazy_image


@register_benchmark("mmstar")
class MMStar(TableBenchmark):
    category = "Other"  # not in the paper's table; reported outside the group averages
    multiple_choice = True
    max_new_tokens = 128
    hub_id = "Lin-Chen/MMStar"
    hub_split = "val"
    chance = 0.25

    def build_prompt(self, row):
        return with_instruction(row["question"], LETTER_ONLY)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=row.get("index", i),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]).strip().lower(),
            meta={"category": row.get("category")},
        )

    def extract(self, sample, prediction):
        return first_token(prediction)
