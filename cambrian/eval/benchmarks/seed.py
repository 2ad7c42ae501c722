"""SEED-Bench image subset (``lmms-lab/SEED-Bench`` test), multiple choice = SEED-I.

Expected files under ``DIR/seed``: ``*.parquet``/``*.jsonl`` with columns ``question_id``, ``question``,
``choice_a``..``choice_d``, ``answer`` (letter), ``question_type_id`` (1–9 are the image dimensions),
``data_type``, ``image`` (a **list** of images; rows with more than one image — the video questions — are
skipped, as the official script does).

Prompt: ``question + " Options:\\nA. a\\nB. b\\nC. c\\nD. d" + "\\nAnswer with the option's letter from the given
choices directly."``; max_new_tokens 512. Official scorer (default): MCQ extract (``rstrip(".")``, brackets
stripped, first character); exact letter. Lenient scorer (``accuracy_lenient``): the forgiving MCQ extract. Per ``question_type_id`` accuracy
is reported under ``per_category``.
"""

from __future__ import annotations

from ...prompts import LETTER, option_lines, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import mcq_extract, official_mcq
from ._common import TableBenchmark, lazy_image


@register_benchmark("seed")
class SEED(TableBenchmark):
    category = "General"
    multiple_choice = True
    max_new_tokens = 512
    hub_id = "lmms-lab/SEED-Bench"
    chance = 0.25

    def build_prompt(self, row):
        opts = option_lines([row["choice_" + k] for k in "abcd"])
        return with_instruction(f"{row['question']} Options:{opts}", LETTER)

    def make_sample(self, i, row, base):
        ims = row.get("image")
        ims = list(ims) if isinstance(ims, (list, tuple)) else ([ims] if ims is not None else [])
        if len(ims) != 1:
            return None
        return EvalSample(
            idx=str(row.get("question_id", i)),
            prompt=self.build_prompt(row),
            images=[lazy_image(ims[0], base)],
            answer=str(row["answer"]).strip().lower(),
            meta={"category": row.get("question_type_id")},
        )

    def extract(self, sample, prediction):
        return official_mcq(prediction, ".")

    def extract_lenient(self, sample, prediction):
        return mcq_extract(prediction)
