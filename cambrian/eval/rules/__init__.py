"""Answer extraction and per-item metrics (our own implementations of the published rules), one family per module
on shared primitives (``common.py``): ``official.py`` (the numbers of the paper's table; every benchmark's default)
and ``lenient.py`` (``--scorer lenient``: the official rules plus explicit forgiveness steps)."""

from .common import first_token, is_float, levenshtein, yes_no
from .lenient import anls, keyword_extract, mcq_extract, normalize_vqa, relaxed_match, to_number, vqa_accuracy, within
from .official import (
    close_number,
    evalai_normalize,
    official_anls,
    official_keyword,
    official_mcq,
    official_relaxed,
    official_vqa_accuracy,
)

__all__ = [
    "anls",
    "close_number",
    "evalai_normalize",
    "first_token",
    "is_float",
    "keyword_extract",
    "levenshtein",
    "mcq_extract",
    "normalize_vqa",
    "official_anls",
    "official_keyword",
    "official_mcq",
    "official_relaxed",
    "official_vqa_accuracy",
    "relaxed_match",
    "to_number",
    "vqa_accuracy",
    "within",
    "yes_no",
]
