"""The lenient rules (``--scorer lenient``; metrics with a ``_lenient`` suffix that never enter the paper-style table):
the official ones plus explicit forgiveness steps for formatting the official scripts count wrong ("45%", "1,234",
"( B )", "Brazil.", "B. ")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .common import (
    PERIOD,
    after_keywords,
    first_char,
    normalized_distances,
    punctuation_out,
    relative_close,
    soft_accuracy,
    words_out,
)
from .official import OFFICIAL_CONTRACTIONS, official_keyword


def mcq_extract(text: str | None, *, truncate: bool = True, strip_chars: str = ".") -> str:
    """``official_mcq``, forgiving spaces: whitespace is stripped after the trailing ``strip_chars`` and after one
    leading "(" / trailing ")" are removed (the official rule strips brackets only at the very ends)."""
    s = after_keywords(text).strip().rstrip(strip_chars).strip()
    return first_char(s.removeprefix("(").removesuffix(")").strip(), truncate)


def keyword_extract(text: str | None) -> str:
    """``official_keyword``, forgiving a space before the final period."""
    return official_keyword(text).strip()


def to_number(text) -> float | None:
    """Parse "1,234", "$5", "45%", " 3.0 " as a float (no /100 for "%"); None when not a number."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().rstrip(".").strip().replace(",", "").removeprefix("$").removesuffix("%")
    try:
        return float(s.strip())
    except ValueError:
        return None


def within(pred, gt, tol: float = 0.05) -> bool:
    """Both parse with :func:`to_number` and ``|pred - gt| <= tol * |gt|`` (exact when gt == 0)."""
    p, g = to_number(pred), to_number(gt)
    return p is not None and g is not None and relative_close(p, g, tol)


def relaxed_match(pred: str, gt: str, tol: float = 0.05) -> bool:
    """ChartQA relaxed accuracy: numeric within ``tol`` of the ground truth, else case-insensitive exact match.

    The official local scorer only lower-cases, so "45%" never matches "45" (docs/official-code.md#bugs B8); we strip
    "%", "$" and thousands separators before the numeric comparison (the ChartQA paper's intent)."""
    p, g = str(pred).strip().lower(), str(gt).strip().lower()
    if to_number(p) is not None and to_number(g) is not None:
        return within(p, g, tol)
    return p.rstrip(".") == g


def anls(pred: str, gts: Iterable[str], threshold: float = 0.5) -> float:
    """``official_anls`` with the distance divided by the longer *normalised* string, and a distance of exactly
    ``threshold`` scoring 0 (as the ANLS definition reads)."""
    values = normalized_distances(pred, gts, raw_lengths=False)
    if not values:
        return 0.0
    best = min(values)
    return 1.0 - best if best < threshold else 0.0


# the common contractions of the official table (not its compound forms such as "wouldnt've"), plus three it lacks
_COMMON = """aint arent cant couldve couldnt didnt doesnt dont hadnt hasnt havent hed hes howd howll hows Im Ive isnt itd
itll maam mightnt mightve mustnt mustve neednt notve oclock shant shouldve shouldnt somebodys someones thats thered
theres theyd theyll theyre theyve twas wasnt weve werent whatll whatre whats whatve whens whered wheres whereve whod
wholl whos whove whyll whyre whys wont wouldve wouldnt yall youd youll youre youve""".split()
CONTRACTIONS = {k: OFFICIAL_CONTRACTIONS[k] for k in _COMMON} | {"lets": "let's", "shed": "she'd", "shes": "she's"}
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")


def normalize_vqa(answer: str) -> str:
    """EvalAI answer normalisation without the official quirks: "," and "?" are not deleted up front (they go through
    the punctuation step), "'s" is not split off, every period not followed by a digit goes (not only the first 32);
    then number words, articles, contractions."""
    s = str(answer).replace("\n", " ").replace("\t", " ").strip()
    return words_out(PERIOD.sub("", punctuation_out(s, _DIGIT_COMMA.search(s) is not None)), CONTRACTIONS)


def vqa_accuracy(pred: str, gts: Sequence[str]) -> float:
    """VQA soft accuracy of a prediction against (usually ten) human answers, after :func:`normalize_vqa`."""
    return soft_accuracy(normalize_vqa(pred), [normalize_vqa(a) for a in gts])
