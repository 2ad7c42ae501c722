"""AI2D test (``lmms-lab/ai2d``), multiple choice.

Expected files under ``DIR/ai2d``: ``*.parquet``/``*.jsonl`` with columns ``question``, ``options`` (list of
strings), ``answer`` (the correct option's index as a string, "0".."3"), ``image``.

Prompt: ``question + "\\nA. o0\\nB. o1…" + "\\nAnswer with the option's letter from the given choices
directly."``; max_new_tokens 512. Official scorer (default): MCQ extract (``rstrip(".:,")``), letters a/b/c/d →
"0".."3" (any other answer is kept as it is), exact vs the index. Lenient scorer (``accuracy_lenient``): the
forgiving MCQ extract, any letter mapped to its index.
"""

from __future__ import annotations

from ...prompts import LETTER, option_lines, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import mcq_extract, official_mcq
from ._common import TableBenchmark, lazy_image

_INDEX = {"a": "0", "b": "1", "c": "2", "d": "3"}


@register_benchmark("ai2d")
class AI2D(TableBenchmark):
    category = "Knowledge"
    multiple_choice = True
    max_new_tokens = 512
    hub_id = "lmms-lab/ai2d"
    chance = 0.25

    def build_prompt(self, row):
        return with_instruction(str(row["question"]) + option_lines(list(row["options"])), LETTER)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]).strip(),
            meta={"choices": list(row["options"])},
        )

    def extract(self, sample, prediction):
        s = official_mcq(prediction, ".:,")
        return _INDEX.get(s, s)

    def is_correct(self, sample, extracted):
        return float(extracted == sample.answer.lower())

    def extract_lenient(self, sample, prediction):
        s = mcq_extract(prediction)
        return str(ord(s) - ord("a")) if len(s) == 1 and "a" <= s <= "z" else None
