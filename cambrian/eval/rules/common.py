"""The primitives both rule families are built on: the answer keywords, number parsing and the relative tolerance,
edit distance, the VQA soft score, and the EvalAI normalisation steps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

ANSWER_KEYS = ("answer is", "answer is:", "answer:")


def after_keywords(text: str | None) -> str:
    """Lower-case and strip; for each answer keyword present (in this order), keep what follows its last use."""
    s = (text or "").lower().strip()
    for key in ANSWER_KEYS:
        if key in s:
            s = s.split(key)[-1]
    return s


def first_char(s: str, truncate: bool) -> str:
    """An option letter: the first character of ``s`` when ``truncate`` (and ``s`` is longer)."""
    return s[0] if truncate and len(s) > 1 else s


def first_token(text: str | None, strip_chars: str = ".:,") -> str:
    """First whitespace token, lower-cased, ``rstrip(strip_chars)`` (POPE / MMStar, official); empty text gives ""
    instead of the official ``split()[0]`` IndexError (docs/official-code.md#bugs B8)."""
    parts = (text or "").split()
    return parts[0].lower().rstrip(strip_chars) if parts else ""


def yes_no(text: str | None) -> str:
    """MME toolkit rule: exact yes/no, else "yes"/"no" found in the first four characters, else "other"."""
    s = (text or "").lower().strip().rstrip(".")
    if s in ("yes", "no"):
        return s
    head = s[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


# --- numbers -------------------------------------------------------------------------------------------------
def is_float(text) -> bool:
    """What the official ``is_number`` accepts: anything Python's ``float()`` parses ("12", " 1e3 ", "1_000", "nan");
    not "45%", "1,234" or "$5"."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def relative_close(pred: float, gt: float, tol: float) -> bool:
    """``|pred - gt| <= tol * |gt|``: the tolerance is relative to the ground truth (exact when it is 0)."""
    return abs(pred - gt) <= tol * abs(gt)


# --- edit distance -------------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _collapse(s: str) -> str:
    return " ".join(s.strip().lower().split())


def normalized_distances(pred: str | None, gts: Iterable, raw_lengths: bool) -> list[float]:
    """Per ground truth, the edit distance of the whitespace-collapsed, lower-cased strings divided by the longer
    string: of the **raw** strings (``raw_lengths``, as the DocVQA evaluator) or of the collapsed ones (0 when
    both are empty)."""
    pred = pred or ""
    p = _collapse(pred)
    out = []
    for gt in gts:
        gt = str(gt)
        g = _collapse(gt)
        length = max(len(gt.upper()), len(pred.upper())) if raw_lengths else max(len(p), len(g))
        out.append(levenshtein(g, p) / length if length else 0.0)
    return out


# --- VQA soft accuracy and the EvalAI normalisation steps ----------------------------------------------------
def soft_accuracy(pred: str, answers: Sequence[str]) -> float:
    """The VQA score of a normalised prediction against normalised human answers: the mean over the leave-one-out
    subsets of ``min(1, matches / 3)`` (0 without answers)."""
    if not answers:
        return 0.0
    accs = [min(1.0, sum(o == pred for o in answers[:i] + answers[i + 1 :]) / 3.0) for i in range(len(answers))]
    return sum(accs) / len(accs)


NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = {"a", "an", "the"}
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
PERIOD = re.compile(r"\.(?!\d)")  # a period not followed by a digit (EvalAI's effective rule)


def punctuation_out(s: str, digit_comma: bool) -> str:
    """Each of ``PUNCT``: deleted when it touches a space in ``s`` (or, with ``digit_comma``, always), else replaced
    by a space."""
    out = s
    for p in PUNCT:
        if (p + " " in s or " " + p in s) or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return out


def words_out(s: str, contractions: dict[str, str]) -> str:
    """Lower-cased words, number words as digits, articles dropped, ``contractions`` applied."""
    words = []
    for w in s.lower().split():
        w = NUMBER_WORDS.get(w, w)
        if w not in ARTICLES:
            words.append(contractions.get(w, w))
    return " ".join(words)
