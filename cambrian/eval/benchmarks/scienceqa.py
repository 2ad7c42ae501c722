"""ScienceQA-IMG (``derek-thomas/ScienceQA`` test, image questions only), multiple choice.

Expected files under ``DIR/scienceqa``: ``*.parquet``/``*.jsonl`` with columns ``image`` (null for text-only
questions), ``question``, ``choices`` (list), ``answer`` (int index), ``hint``, plus ``subject``, ``category``, ...

Prompt (official): ``(hint + " " if hint != "") + question + "\\nA. c0\\nB. c1…" + "\\nPlease answer directly with
only the letter of the correct option and nothing else."``; max_new_tokens 512.
Only questions with an image are loaded: the paper's SQA-I is the accuracy over image questions. (The official
overall accuracy also counts the unrun text-only questions as wrong — docs/official-code.md#bugs B8 — we never do.)
Official scorer (default): after the answer keywords, strip and ``rstrip(".")``; correct when the text before
the first "." is the letter, or when the punctuation-stripped answer equals the punctuation-stripped choice.
"(B)" is therefore wrong (its head is "(b)"). Lenient scorer (``accuracy_lenient``): brackets around the letter
are stripped first, so "(B)" counts.
"""

from __future__ import annotations

import string

from ...prompts import LETTER_ONLY, letter, option_lines, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import mcq_extract, official_keyword
from ._common import TableBenchmark, has_image, lazy_image

_PUNCT = str.maketrans("", "", string.punctuation)


def _norm(text: str) -> str:
    return text.translate(_PUNCT).lower().strip()


@register_benchmark("scienceqa")
class ScienceQA(TableBenchmark):
    category = "Knowledge"
    multiple_choice = True
    max_new_tokens = 512
    hub_id = "derek-thomas/ScienceQA"
    metric_name = "accuracy (image questions)"

    def build_prompt(self, row):
        hint = row.get("hint")
        head = f"{hint} " if hint not in (None, "") else ""
        return with_instruction(f"{head}{row['question']}" + option_lines(list(row["choices"])), LETTER_ONLY)

    def make_sample(self, i, row, base):
        if not has_image(row.get("image")):
            return None
        choices = list(row["choices"])
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=int(row["answer"]),
            meta={"choices": choices, "category": row.get("subject")},
        )

    def _correct(self, sample, extracted: str) -> float:
        gt = letter(sample.answer).lower()
        choice = str(sample.meta["choices"][sample.answer]).lower().strip()
        return float(extracted.split(".")[0] == gt or _norm(extracted) == _norm(choice))

    def extract(self, sample, prediction):
        return official_keyword(prediction)

    def is_correct(self, sample, extracted):
        return self._correct(sample, extracted)

    def extract_lenient(self, sample, prediction):
        return mcq_extract(prediction, truncate=False)

    def is_correct_lenient(self, sample, extracted):
        head = extracted.split(".")[0].strip()
        return float(head == letter(sample.answer).lower() or self._correct(sample, extracted))
