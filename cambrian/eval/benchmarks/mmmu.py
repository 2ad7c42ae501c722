"""MMMU validation (``lmms-lab/MMMU``, 900 questions).

Expected files under ``DIR/mmmu``: ``*.parquet``/``*.jsonl`` with columns ``id``, ``question`` (may contain
``<image N>`` tags), ``options`` (a Python-literal list as a string, e.g. ``"['1', '2']"``), ``answer`` (letter for
multiple choice; a value, or a list literal of accepted values, for open questions), ``question_type``
(``multiple-choice`` / ``open``), ``subfield``, ``image_1`` … ``image_7``.

Prompt: the question with ``<image N>`` tags removed; multiple choice: ``+ " Options:" + "\\nA. …"`` then
``"\\nAnswer with the option's letter from the given choices directly."``; open:
``+ "\\nAnswer the question using a single word or phrase."``. Only ``image_1`` is fed (official protocol);
max_new_tokens 512.
Answer: multiple choice — MCQ extract, exact letter; open — keyword extract, rstrip ".", exact match, or
numeric within 5 % **of the ground truth** (the official code swaps the arguments and takes 5 % of the
prediction, spec §9.1 item 8). Options are parsed with ``ast.literal_eval`` (the official regex ``'(.*?)'``
breaks on apostrophes), falling back to that regex.
"""

from __future__ import annotations

import ast
import re

from ..api import EvalSample, register_benchmark
from ..extract import keyword_extract, mcq_extract, within
from ...prompts import LETTER, SHORT
from ._common import TableBenchmark, has_image, lazy_image

_TAG = re.compile(r"<image \d+>")


def parse_list(text) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(x) for x in text]
    try:
        v = ast.literal_eval(str(text))
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    except (ValueError, SyntaxError):
        return re.findall(r"'(.*?)'", str(text))


@register_benchmark("mmmu")
class MMMU(TableBenchmark):
    category = "Knowledge"
    max_new_tokens = 512
    hub_id = "lmms-lab/MMMU"
    hub_split = "validation"
    metric_name = "accuracy (val)"

    def build_prompt(self, row):
        q = _TAG.sub("", str(row["question"])).strip()
        if row.get("question_type") == "multiple-choice":
            opts = "".join(f"\n{chr(65 + k)}. {o}" for k, o in enumerate(parse_list(row["options"])))
            return f"{q} Options:{opts}\n{LETTER}"
        return f"{q}\n{SHORT}"

    def make_sample(self, i, row, base):
        mc = row.get("question_type") == "multiple-choice"
        ans = str(row["answer"]).strip()
        answer = ans.lower() if mc else [a.strip().lower() for a in (parse_list(ans) if ans.startswith("[") else [ans])]
        ims = [lazy_image(row["image_1"], base)] if has_image(row.get("image_1")) else []
        return EvalSample(idx=str(row.get("id", i)), prompt=self.build_prompt(row), images=ims, answer=answer,
                          meta={"mc": mc, "category": row.get("subfield")})

    def extract(self, sample, prediction):
        return mcq_extract(prediction) if sample.meta["mc"] else keyword_extract(prediction)

    def is_correct(self, sample, extracted):
        if sample.meta["mc"]:
            return float(extracted == sample.answer)
        return float(any(extracted == a or within(extracted, a) for a in sample.answer))
