"""MMMU validation (``lmms-lab/MMMU``, 900 questions).

Expected files under ``DIR/mmmu``: ``*.parquet``/``*.jsonl`` with columns ``id``, ``question`` (may contain
``<image N>`` tags), ``options`` (a Python-literal list as a string, e.g. ``"['1', '2']"``), ``answer`` (letter for
multiple choice; a value, or a list literal of accepted values, for open questions), ``question_type``
(``multiple-choice`` / ``open``), ``subfield``, ``image_1`` … ``image_7``.

Prompt (official): multiple choice ``question + " Options:" + "\\nA. …"`` (options found with the regex
``'(.*?)'``) ``+ "\\nAnswer with the option's letter from the given choices directly."``; open
``question + "\\nAnswer the question using a single word or phrase."``; then every ``<image N>`` tag is removed
from the whole text and it is stripped (only at its end when an image is prepended). Only ``image_1`` is fed;
max_new_tokens 512.

Official scorer (default): multiple choice — MCQ extract (``rstrip(".:,")``), exact letter; open — keyword
extract, ``rstrip(".")``, exact match with the lower-cased ``answer`` string, or, when both parse with Python's
``float``, within 5 % **of the ground truth**. FIX (docs/official-code.md#bugs B8): the official code swaps the arguments and
takes 5 % of the prediction. Nothing else is stripped ("$5", "45%", "1,000" are not numbers) and a list-literal
answer is compared as the string it is.
Lenient scorer (``accuracy_lenient``): "$", "%" and "," are stripped before the numeric comparison, and a
list-literal answer accepts each of its values.
"""

from __future__ import annotations

import ast
import re

from ...prompts import LETTER, SHORT, option_lines, with_instruction
from ..api import EvalSample, register_benchmark
from ..rules import close_number, keyword_extract, mcq_extract, official_keyword, official_mcq, within
from ._common import TableBenchmark, has_image, lazy_image

_TAG = re.compile(r"<image \d+>")
_QUOTED = re.compile(r"'(.*?)'")


def parse_list(text) -> list[str]:
    """A list literal (``"['a', \\"it's\\"]"``) -> its items; the lenient scorer's reading of open answers."""
    if isinstance(text, (list, tuple)):
        return [str(x) for x in text]
    try:
        v = ast.literal_eval(str(text))
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    except (ValueError, SyntaxError):
        return _QUOTED.findall(str(text))


def official_options(text) -> list[str]:
    """The options as the official script reads them: every ``'...'`` span (an apostrophe inside an option
    splits it, as there)."""
    if isinstance(text, (list, tuple)):
        return [str(x) for x in text]
    return _QUOTED.findall(str(text))


@register_benchmark("mmmu")
class MMMU(TableBenchmark):
    category = "Knowledge"
    max_new_tokens = 512
    hub_id = "lmms-lab/MMMU"
    hub_split = "validation"
    metric_name = "accuracy (val)"

    def build_prompt(self, row):
        q = str(row["question"])
        if row.get("question_type") == "multiple-choice":
            body = with_instruction(f"{q} Options:" + option_lines(official_options(row["options"])), LETTER)
        else:
            body = with_instruction(q, SHORT)
        body = _TAG.sub("", body)
        # the official script strips "<image>\n" + text: with an image only the end of the text is stripped
        return body.rstrip() if has_image(row.get("image_1")) else body.strip()

    def make_sample(self, i, row, base):
        mc = row.get("question_type") == "multiple-choice"
        ans = str(row["answer"])
        ims = [lazy_image(row["image_1"], base)] if has_image(row.get("image_1")) else []
        return EvalSample(
            idx=str(row.get("id", i)),
            prompt=self.build_prompt(row),
            images=ims,
            answer=ans,
            meta={"mc": mc, "category": row.get("subfield")},
        )

    def extract(self, sample, prediction):
        return official_mcq(prediction, ".:,") if sample.meta["mc"] else official_keyword(prediction)

    def is_correct(self, sample, extracted):
        gt = sample.answer.lower()
        if extracted == gt:
            return 1.0
        return float(close_number(extracted, gt))

    def extract_lenient(self, sample, prediction):
        return mcq_extract(prediction) if sample.meta["mc"] else keyword_extract(prediction)

    def is_correct_lenient(self, sample, extracted):
        ans = sample.answer.strip()
        if sample.meta["mc"]:
            return float(extracted == ans.lower())
        accepted = [a.strip().lower() for a in (parse_list(ans) if ans.startswith("[") else [ans])]
        return float(any(extracted == a or within(extracted, a) for a in accepted))
