"""AI2D test (``lmms-lab/ai2d``), multiple choice.

Expected files under ``DIR/ai2d``: ``*.parquet``/``*.jsonl`` with columns ``question``, ``options`` (list of
strings), ``answer`` (the correct option's index as a string, "0".."3"), ``image``.

Prompt: ``question + "\\nA. o0\\nB. o1…" + "\\nAnswer with the option's letter from the given choices
directly."``; max_new_tokens 512. Answer: MCQ extract, letter a/b/c/d → "0".."3", exact vs the index.
"""

from __future__ import annotations

from ..api import EvalSample, register_benchmark
from ..extract import mcq_extract
from ...prompts import LETTER, options_block
from ._common import TableBenchmark, lazy_image


@register_benchmark("ai2d")
class AI2D(TableBenchmark):
    category = "Knowledge"
    max_new_tokens = 512
    hub_id = "lmms-lab/ai2d"
    chance = 0.25

    def build_prompt(self, row):
        return f"{row['question']}\n{options_block(list(row['options']))}\n{LETTER}"

    def make_sample(self, i, row, base):
        return EvalSample(idx=i, prompt=self.build_prompt(row), images=[lazy_image(row["image"], base)],
                          answer=str(row["answer"]).strip(), meta={"choices": list(row["options"])})

    def extract(self, sample, prediction):
        s = mcq_extract(prediction)
        return str(ord(s) - ord("a")) if len(s) == 1 and "a" <= s <= "z" else None
