"""ScienceQA-IMG (``derek-thomas/ScienceQA`` test, image questions only), multiple choice.

Expected files under ``DIR/scienceqa``: ``*.parquet``/``*.jsonl`` with columns ``image`` (null for text-only
questions), ``question``, ``choices`` (list), ``answer`` (int index), ``hint``, plus ``subject``, ``category``, ...

Prompt: ``(hint + " " if hint) + question + "\\nA. c0\\nB. c1…" + "\\nPlease answer directly with only the
letter of the correct option and nothing else."``; max_new_tokens 512.
Only questions with an image are loaded: the paper's SQA-I is the accuracy over image questions. (The official
overall accuracy also counts the unrun text-only questions as wrong — spec §9.1 item 8 — we never do.)
Correct when the text before the first "." of the extracted answer equals the letter, or the
punctuation-stripped answer equals the choice text.
"""

from __future__ import annotations

import string

from ..api import EvalSample, register_benchmark
from ..extract import mcq_extract
from ...prompts import LETTER_ONLY, letters, options_block
from ._common import TableBenchmark, has_image, lazy_image

_PUNCT = str.maketrans("", "", string.punctuation)


@register_benchmark("scienceqa")
class ScienceQA(TableBenchmark):
    category = "Knowledge"
    max_new_tokens = 512
    hub_id = "derek-thomas/ScienceQA"
    metric_name = "accuracy (image questions)"

    def build_prompt(self, row):
        hint = (row.get("hint") or "").strip()
        head = f"{hint} " if hint else ""
        return f"{head}{row['question']}\n{options_block(list(row['choices']))}\n{LETTER_ONLY}"

    def make_sample(self, i, row, base):
        if not has_image(row.get("image")):
            return None
        choices = list(row["choices"])
        return EvalSample(idx=i, prompt=self.build_prompt(row), images=[lazy_image(row["image"], base)],
                          answer=int(row["answer"]), meta={"choices": choices, "category": row.get("subject")})

    def extract(self, sample, prediction):
        return mcq_extract(prediction, truncate=False)

    def is_correct(self, sample, extracted):
        letter = letters(len(sample.meta["choices"]))[sample.answer].lower()
        choice = str(sample.meta["choices"][sample.answer]).lower().translate(_PUNCT).strip()
        head = extracted.split(".")[0].strip()
        return float(head == letter or extracted.translate(_PUNCT).strip() == choice)
