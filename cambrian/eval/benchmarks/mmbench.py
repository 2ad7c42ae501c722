"""MMBench-EN dev (``lmms-lab/MMBench_EN``, split ``dev``), circular accuracy.

Expected files under ``DIR/mmbench``: ``*.parquet``/``*.jsonl``/``*.tsv``-as-csv with columns ``index``,
``question``, ``hint`` ("nan" or empty when absent), ``A``..``D`` ("nan" for missing options), ``answer``
(letter), ``category``, ``source``, ``image``. Circular copies (the same question and image with rotated
options) are rows of their own, as in the public dev file.

Prompt: ``(hint + "\\n" if hint) + question + " Options:" + "\\nA. …"`` for each present option
``+ "\\nAnswer with the option's letter from the given choices directly."``; max_new_tokens 512.
Answer: MCQ extract (strip ".:,"), exact letter.
Metrics: ``accuracy`` per row; ``circular_accuracy`` (primary, the paper's MMB) = groups whose rows are all
correct / groups. A group is (question, image, source) like the official scorer, except that the image key is
the SHA-1 of the encoded image bytes (the official code uses mmh3 of the image resized to 256², and mmh3 is not a
dependency of ours); a ``circular_group`` column, when present, takes precedence.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from ..api import EvalSample, register_benchmark
from ..extract import mcq_extract
from ...prompts import LETTER
from ._common import TableBenchmark, is_missing, lazy_image


def image_key(value) -> str:
    """Stable hash of an image cell without decoding it (bytes, hub struct or path)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha1(bytes(value)).hexdigest()
    return hashlib.sha1(str(value).encode()).hexdigest()


@register_benchmark("mmbench")
class MMBench(TableBenchmark):
    category = "General"
    max_new_tokens = 512
    hub_id = "lmms-lab/MMBench_EN"
    hub_split = "dev"
    primary_metric = "circular_accuracy"
    metric_name = "circular accuracy"

    def build_prompt(self, row):
        hint = row.get("hint")
        head = f"{hint}\n" if not is_missing(hint) else ""
        opts = "".join(f"\n{l}. {row[l]}" for l in "ABCD" if l in row and not is_missing(row[l]))
        return f"{head}{row['question']} Options:{opts}\n{LETTER}"

    def make_sample(self, i, row, base):
        group = row.get("circular_group")
        if is_missing(group):
            group = f"{row['question']} {image_key(row.get('image'))} {row.get('source', '')}"
        return EvalSample(idx=row.get("index", i), prompt=self.build_prompt(row), images=[lazy_image(row["image"], base)],
                          answer=str(row["answer"]).strip().lower(),
                          meta={"category": row.get("category"), "group": str(group)})

    def extract(self, sample, prediction):
        return mcq_extract(prediction, strip_chars=".:,")

    def score(self, samples, predictions):
        out = super().score(samples, predictions)
        groups = defaultdict(list)
        for s, v in zip(samples, self.item_scores(samples, predictions)):
            groups[s.meta["group"]].append(v)
        out["circular_accuracy"] = sum(all(v) for v in groups.values()) / len(groups) if groups else 0.0
        out["groups"] = len(groups)
        return out
