"""MME (``lmms-lab/MME`` test), perception and cognition scores from acc and acc+.

Expected files under ``DIR/mme``: ``*.parquet``/``*.jsonl`` with columns ``question_id`` (the image, e.g.
``"existence/000000006040.jpg"``), ``question`` (ends with "Please answer yes or no."), ``answer`` ("Yes"/"No"),
``category``, ``image``. Every image has two questions (one "Yes", one "No").

Prompt: ``question + "\\nAnswer the question using a single word or phrase."``; max_new_tokens 32.
Official scorer (default): the prediction lower-cased and ``rstrip(".")`` must equal "yes" / "no" exactly ("Yes, there
is" is wrong). Lenient scorer (``*_lenient``): the MME toolkit rule (exact yes/no, else "yes"/"no" in the first
four characters, else "other").
Per category: acc = correct / questions; acc+ = images whose questions are all correct / images;
score = 100·(acc + acc+). ``perception`` = sum over the ten perception categories (max 2000) and
``cognition`` over the four cognition categories (max 800): **raw scores, not fractions**. The table shows
MME-P raw; group averages use MME-P / 20.

acc+ pairs questions by (category, question_id) — the image — not by the global line parity of the answers
file as the official scorer does (docs/official-code.md#bugs B8), so it does not depend on file order or sharding.
"""

from __future__ import annotations

from collections import defaultdict

from ...prompts import SHORT, with_instruction
from ..api import EvalSample, MCOptions, register_benchmark
from ..rules import yes_no
from ._common import TableBenchmark, lazy_image

PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]


@register_benchmark("mme")
class MME(TableBenchmark):
    category = "General"
    max_new_tokens = 32
    hub_id = "lmms-lab/MME"
    primary_metric = "perception"
    metric_name = "perception score (acc + acc+, max 2000)"

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=i,
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]).strip().lower(),
            meta={"category": row["category"], "image_id": str(row.get("question_id", i))},
        )

    def mc_options(self, sample):
        return MCOptions(("Yes", "No"))

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower().rstrip(".")

    def extract_lenient(self, sample, prediction):
        return yes_no(prediction)

    def score(self, samples, predictions):
        per_q = defaultdict(list)
        per_img = defaultdict(lambda: defaultdict(list))
        for s in samples:
            ok = self.answer(s, predictions.get(s.idx, "") or "") == s.answer
            per_q[s.meta["category"]].append(ok)
            per_img[s.meta["category"]][s.meta["image_id"]].append(ok)
        cats = {}
        for c, oks in per_q.items():
            acc = sum(oks) / len(oks)
            imgs = per_img[c].values()
            acc_plus = sum(all(v) for v in imgs) / len(imgs)
            cats[c] = {"acc": acc, "acc_plus": acc_plus, "score": 100.0 * (acc + acc_plus), "n": len(oks)}
        return {
            "perception": sum(cats[c]["score"] for c in PERCEPTION if c in cats),
            "cognition": sum(cats[c]["score"] for c in COGNITION if c in cats),
            "accuracy": sum(sum(v) for v in per_q.values()) / max(1, len(samples)),
            "per_category": dict(sorted(cats.items())),
            "n": len(samples),
            "missing": sum(s.idx not in predictions for s in samples),
        }

    def table_value(self, metrics):
        v = metrics.get(self.primary_metric)
        return None if v is None else float(v)

    def average_value(self, metrics):
        v = metrics.get(self.primary_metric)
        return None if v is None else float(v) / 20.0
