"""MMBench-EN dev (``lmms-lab/MMBench_EN``, split ``dev``), circular accuracy.

Expected files under ``DIR/mmbench``: ``*.parquet``/``*.jsonl``/``*.tsv``-as-csv with columns ``index``,
``question``, ``hint`` ("nan" or empty when absent), ``A``..``D`` ("nan" for missing options), ``answer``
(letter), ``category``, ``source``, ``image``. Circular copies (the same question and image with rotated
options) are rows of their own, as in the public dev file.

Prompt: ``(hint + "\\n" if hint) + question + " Options:" + "\\nA. …"`` for each present option
``+ "\\nAnswer with the option's letter from the given choices directly."``; max_new_tokens 512.
Official scorer (default): MCQ extract (``rstrip(".:,")``), exact letter.
Metrics: ``accuracy`` per row; ``circular_accuracy`` (primary, the paper's MMB) = groups whose rows are all
correct / groups. A group is, within a category, (question, image, source) as in the official scorer, where the
image is its *decoded* content (RGB, resized to 256x256 with PIL's default filter, raw pixel bytes): two copies
of one picture stored as different files (PNG and JPEG, other metadata) fall in one group. The official code hashes
those bytes with mmh3; we use SHA-1 of the same bytes, which groups identically (mmh3 is not a dependency).
A ``circular_group`` column, when present, takes precedence. Lenient scorer (``*_lenient``): the extraction also
strips spaces around a bracketed letter.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from ...prompts import LETTER, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import mcq_extract, official_mcq
from ._common import TableBenchmark, is_missing, lazy_image


def image_key(image) -> str:
    """Hash of an image's decoded content as the official grouping sees it (RGB, resized to 256x256 with PIL's
    default filter); ``image`` is a PIL image or a hub cell / bytes / path."""
    from PIL import Image

    from ._common import open_image

    im = image if isinstance(image, Image.Image) else open_image(image)
    return hashlib.sha1(im.convert("RGB").resize((256, 256)).tobytes()).hexdigest()


@register_benchmark("mmbench")
class MMBench(TableBenchmark):
    category = "General"
    multiple_choice = True
    max_new_tokens = 512
    hub_id = "lmms-lab/MMBench_EN"
    hub_split = "dev"
    primary_metric = "circular_accuracy"
    metric_name = "circular accuracy"

    def build_prompt(self, row):
        hint = row.get("hint")
        head = f"{hint}\n" if not is_missing(hint) else ""
        opts = "".join(f"\n{k}. {row[k]}" for k in "ABCD" if k in row and not is_missing(row[k]))
        return with_instruction(f"{head}{row['question']} Options:{opts}", LETTER)

    def make_sample(self, i, row, base):
        group = row.get("circular_group")
        meta = {
            "category": row.get("category"),
            "question": str(row["question"]),
            "source": str(row.get("source", "")),
            "group": None if is_missing(group) else str(group),
        }
        return EvalSample(
            idx=row.get("index", i),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]).strip().lower(),
            meta=meta,
        )

    @staticmethod
    def group_of(sample) -> str:
        """The circular group of a sample (decodes its image once, then cached in ``meta``)."""
        if sample.meta.get("group") is None:
            key = image_key(sample.images[0]()) if sample.images else ""
            sample.meta["group"] = f"{sample.meta['question']} {key} {sample.meta['source']}"
        return sample.meta["group"]

    def extract(self, sample, prediction):
        return official_mcq(prediction, ".:,")

    def extract_lenient(self, sample, prediction):
        return mcq_extract(prediction, strip_chars=".:,")

    def score(self, samples, predictions):
        out = TableBenchmark.score(self, samples, predictions)
        groups = defaultdict(list)
        for s, v in zip(samples, self.item_scores(samples, predictions)):
            groups[(str(s.meta.get("category")), self.group_of(s))].append(v)
        out["circular_accuracy"] = sum(all(v) for v in groups.values()) / len(groups) if groups else 0.0
        out["groups"] = len(groups)
        return out
