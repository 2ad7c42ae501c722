"""GQA testdev-balanced (``lmms-lab/GQA``), exact match.

Expected files under ``DIR/gqa``:
- ``testdev_balanced_instructions/*.parquet`` (or ``.jsonl``): columns ``id``, ``imageId``, ``question``, ``answer``
  (plus the hub's ``fullAnswer``, ``types``, ... which are ignored);
- ``testdev_balanced_images/*.parquet``: columns ``id`` (= ``imageId``) and ``image`` (hub image struct).
  Without it, an ``image`` column on the question rows or ``images/<imageId>.jpg`` is used.

Prompt: ``question + "\\nAnswer the question using a single word or phrase."``; max_new_tokens 128.
Official scorer (default): the prediction (stripped, as the official decode does) lower-cased and ``rstrip(".")``,
exact match with the lower-cased ground truth ("yes ." is wrong). Lenient scorer (``accuracy_lenient``): also
strips spaces around the answer and the ground truth.
"""

from __future__ import annotations

from pathlib import Path

from ...prompts import SHORT, with_instruction
from ..api import EvalSample, register_benchmark
from ._common import TableBenchmark, find_files, lazy_image, read_table_file


@register_benchmark("gqa")
class GQA(TableBenchmark):
    category = "General"
    max_new_tokens = 128
    hub_id = "lmms-lab/GQA"
    hub_config = "testdev_balanced_instructions"
    hub_split = "testdev"
    metric_name = "exact match"

    def rows(self, path):
        if path is None:
            import datasets  # optional, online only

            q = list(datasets.load_dataset(self.hub_id, "testdev_balanced_instructions", split="testdev"))
            ims = datasets.load_dataset(self.hub_id, "testdev_balanced_images", split="testdev")
            images = {r["id"]: r["image"] for r in ims}
            return [({**r, "image": images.get(r["imageId"])}, None) for r in q]
        root = Path(path)
        qfiles = (
            find_files(root, ("testdev_balanced_instructions*/**/*", "testdev_balanced_instructions*"))
            if root.is_dir()
            else [root]
        )
        images = {}
        if root.is_dir() and any(root.glob("testdev_balanced_images*")):
            for f in find_files(root, ("testdev_balanced_images*/**/*", "testdev_balanced_images*")):
                for r in read_table_file(f):
                    images[str(r["id"])] = (r["image"], f.parent)
        out = []
        for f in qfiles:
            for r in read_table_file(f):
                im = images.get(str(r.get("imageId")))
                if im is None:
                    im = (
                        (r["image"], f.parent)
                        if r.get("image") is not None
                        else (f"images/{r.get('imageId')}.jpg", root if root.is_dir() else f.parent)
                    )
                out.append(({**r, "image": im[0]}, im[1]))
        return out

    def build_prompt(self, row):
        return with_instruction(row["question"], SHORT)

    def make_sample(self, i, row, base):
        return EvalSample(
            idx=str(row.get("id", i)),
            prompt=self.build_prompt(row),
            images=[lazy_image(row["image"], base)],
            answer=str(row["answer"]),
            meta={"category": None},
        )

    def extract(self, sample, prediction):
        return (prediction or "").strip().lower().rstrip(".")

    def is_correct(self, sample, extracted):
        return float(extracted == sample.answer.lower())

    def extract_lenient(self, sample, prediction):
        return (prediction or "").strip().lower().rstrip(".").strip()

    def is_correct_lenient(self, sample, extracted):
        return float(extracted == sample.answer.strip().lower())
