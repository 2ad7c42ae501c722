"""POPE (``lmms-lab/POPE`` test: adversarial / popular / random, 9000 questions), yes/no accuracy.

Expected files under ``DIR/pope``: ``*.parquet``/``*.jsonl`` with columns ``question_id``, ``question``,
``answer`` ("yes"/"no"), ``category`` (subset), ``image``.

Prompt: ``question + "\\nAnswer the question using a single word or phrase."``; max_new_tokens 128.
Answer: first whitespace token, lower, rstrip ".:," (empty text → "", counted wrong, instead of the official
IndexError). ``accuracy`` is the tabulated number; we also report yes-class precision / recall / F1 and the
yes ratio (the usual POPE companions), which the official script omits.
"""

from __future__ import annotations

from ...prompts import SHORT, with_instruction
from ..api import EvalSample, MCOptions, register_benchmark
from ..rules import first_token
from ._common import TableBenchmark, lazy_image


@register_benchmark("pope")
class POPE(TableBenchmark):
    category = "Other"  # not in the paper's table; reported outside the group averages
    max_new_tokens = 128
    hub_id = "lmms-lab/POPE"
    chance = 0.5

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=str(row.get("question_id", i)),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]).strip().lower(),
            meta={"category": row.get("category")},
        )

    def mc_options(self, sample):
        return MCOptions(("yes", "no"))

    def extract(self, sample, prediction):
        return first_token(prediction)

    def score(self, samples, predictions):
        out = super().score(samples, predictions)
        preds = [self.answer(s, predictions.get(s.idx, "") or "") for s in samples]
        tp = sum(p == "yes" and s.answer == "yes" for p, s in zip(preds, samples))
        fp = sum(p == "yes" and s.answer != "yes" for p, s in zip(preds, samples))
        fn = sum(p != "yes" and s.answer == "yes" for p, s in zip(preds, samples))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out.update(
            precision=prec,
            recall=rec,
            f1=2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            yes_ratio=sum(p == "yes" for p in preds) / len(preds) if preds else 0.0,
        )
        return out
