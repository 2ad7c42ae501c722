"""MMVP (``MMVP/MMVP``: ``Questions.csv`` + ``MMVP Images/<Index>.jpg``), pair accuracy.

Expected files under ``DIR/mmvp``: ``Questions.csv`` with columns ``Index`` (1..300), ``Question``, ``Options``
(``"(a) Open (b) Closed"``), ``Correct Answer`` (``"(a)"``), and the images ``MMVP Images/<Index>.jpg``.
A parquet/JSONL with the same columns and an ``image`` column also works.

Prompt: ``question + " Options:\\nA. <opt a>\\nB. <opt b>" + "\\nAnswer with the option's letter from the given
choices directly."``; max_new_tokens 512. Answer: MCQ extract **without** first-character truncation; correct
when it is the letter or the exact option text.
Metrics: ``accuracy`` = pair accuracy (questions 2k-1 and 2k, by ``Index``, both correct; the paper's number);
``question_accuracy`` = per question. Pairs are formed from ``Index``, not from line parity of the answers file
(spec §9.1 item 8), so order and sharding do not matter.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from ..api import EvalSample, register_benchmark
from ..extract import mcq_extract
from ...prompts import LETTER
from ._common import TableBenchmark, lazy_image

_OPT = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.S)


def parse_options(text: str) -> list[str]:
    return [m.group(2).strip() for m in _OPT.finditer(str(text).strip())]


@register_benchmark("mmvp")
class MMVP(TableBenchmark):
    category = "Vision-Centric"
    max_new_tokens = 512
    hub_id = "MMVP/MMVP"
    files = ("Questions.csv", "*.parquet", "*.jsonl")
    metric_name = "pair accuracy"
    chance = 0.25  # two 2-way questions both right by guessing

    def build_prompt(self, row):
        opts = parse_options(row["Options"])
        body = "\n".join(f"{l}. {o}" for l, o in zip("AB", opts))
        return f"{row['Question']} Options:\n{body}\n{LETTER}"

    def make_sample(self, i, row, base):
        index = int(row["Index"])
        image = row.get("image") or Path("MMVP Images") / f"{index}.jpg"
        letter = str(row["Correct Answer"]).strip().strip("()").lower()
        opts = parse_options(row["Options"])
        return EvalSample(idx=index, prompt=self.build_prompt(row), images=[lazy_image(image, base)],
                          answer=letter, meta={"options": opts})

    def extract(self, sample, prediction):
        return mcq_extract(prediction, truncate=False, strip_chars=".:,")

    def is_correct(self, sample, extracted):
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
        return {"accuracy": sum(full) / len(full) if full else 0.0, "pairs": len(full),
                "question_accuracy": sum(scores) / len(scores) if scores else 0.0, "n": len(samples),
                "missing": sum(s.idx not in predictions for s in samples)}
