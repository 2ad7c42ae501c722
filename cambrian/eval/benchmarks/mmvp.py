"""MMVP (``MMVP/MMVP``: ``Questions.csv`` + ``MMVP Images/<Index>.jpg``), pair accuracy.

Expected files under ``DIR/mmvp``: ``Questions.csv`` with columns ``Index`` (1..300), ``Question``, ``Options``
(``"(a) Open (b) Closed"``), ``Correct Answer`` (``"(a)"``), and the images ``MMVP Images/<Index>.jpg``.
A parquet/JSONL with the same columns and an ``image`` column also works.

Prompt (official): ``question + " Options:"``, then the ``Options`` text split at "(b)", each part stripped,
"(a)" written "A." and the second part prefixed "B. ", one per line, then ``"\\nAnswer with the option's letter
from the given choices directly."``; max_new_tokens 512.
Official scorer (default): MCQ extract (``rstrip(".:,")``, brackets stripped) **without** first-character
truncation; correct when it is the letter or the lower-cased option text (the text after each ")" of
``Options``). Lenient scorer (``*_lenient``): the option text is also compared without a trailing period.
Metrics: ``accuracy`` = pair accuracy (questions 2k-1 and 2k, by ``Index``, both correct; the paper's number);
``question_accuracy`` = per question. Pairs are formed from ``Index``, not from line parity of the answers file
(docs/official-code.md#bugs B8), so order and sharding do not matter.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from ...prompts import LETTER, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import mcq_extract, official_mcq
from ._common import TableBenchmark, lazy_image

_OPT = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.S)


def parse_options(text: str) -> list[str]:
    return [m.group(2).strip() for m in _OPT.finditer(str(text).strip())]


def official_text_options(text: str) -> list[str]:
    """The option texts as the official script reads them: split at "(", keep what follows the first ")" of each
    part, stripped."""
    return [part.split(")", 1)[1].strip() if ")" in part else "" for part in str(text).split("(")[1:]]


@register_benchmark("mmvp")
class MMVP(TableBenchmark):
    category = "Vision-Centric"
    multiple_choice = True
    max_new_tokens = 512
    hub_id = "MMVP/MMVP"
    files = ("Questions.csv", "*.parquet", "*.jsonl")
    metric_name = "pair accuracy"
    chance = 0.25  # two 2-way questions both right by guessing

    def build_prompt(self, row):
        parts = [p.strip().replace("(a)", "A.").replace("(b)", "B.") for p in str(row["Options"]).split("(b)")]
        if len(parts) > 1:
            parts[1] = "B. " + parts[1]
        return with_instruction(f"{row['Question']} Options:" + "".join(f"\n{p}" for p in parts), LETTER)

    def make_sample(self, i, row, base):
        index = int(row["Index"])
        image = row.get("image") or Path("MMVP Images") / f"{index}.jpg"
        letter = str(row["Correct Answer"]).strip().strip("()").lower()
        return EvalSample(
            idx=index,
            prompt=self.build_prompt(row),
            images=[lazy_image(image, base)],
            answer=letter,
            meta={"options": parse_options(row["Options"]), "text_options": official_text_options(row["Options"])},
        )

    def extract(self, sample, prediction):
        return official_mcq(prediction, ".:,", truncate=False)

    def is_correct(self, sample, extracted):
        opts = [o.lower() for o in sample.meta["text_options"]]
        k = ord(sample.answer) - ord("a")
        return float(extracted == sample.answer or (0 <= k < len(opts) and extracted == opts[k]))

    def extract_lenient(self, sample, prediction):
        return mcq_extract(prediction, truncate=False, strip_chars=".:,")

    def is_correct_lenient(self, sample, extracted):
        opts = sample.meta["options"]
        k = ord(sample.answer) - ord("a")
        text = opts[k].lower().rstrip(".") if 0 <= k < len(opts) else None
        return float(extracted == sample.answer or (text is not None and extracted == text))

    def score(self, samples, predictions):
        scores = self.item_scores(samples, predictions)
        pairs = defaultdict(list)
        for s, v in zip(samples, scores):
            pairs[(int(s.idx) - 1) // 2].append(v)
        full = [all(v) for v in pairs.values() if len(v) == 2]
        return {
            "accuracy": sum(full) / len(full) if full else 0.0,
            "pairs": len(full),
            "question_accuracy": sum(scores) / len(scores) if scores else 0.0,
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }
