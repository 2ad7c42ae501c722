"""Answer extraction for CV-Bench multiple-choice questions.

Accepted (case-insensitive, surrounding whitespace / quotes / markdown ``*`` ignored, trailing ``.:,;!`` ignored):

- a bare letter: ``B``, ``(B)``, ``B.``, ``B)``, ``B:``
- a lead-in followed by one of those: ``The answer is B``, ``Answer: (B)``, ``the correct answer is B.``
  (the text after the *last* "answer is" / "answer:" is used, as in the official ``*_test.py``)
- a letter followed by its own option text: ``(B) right``, ``B. right`` (the text must be option B's)
- the option's text alone: ``right``, ``the red cube``, ``3``

Anything else (``B or C``, ``Bicycle``, a letter beyond the choices, a letter whose text names another option,
text matching no option) is a **parse failure**: :func:`extract_choice` returns ``None`` and the scorer counts it
as wrong and lists it. Unlike the official code we never keep "the first character" of a longer answer, which
silently turns e.g. "Below" into option B.
"""

from __future__ import annotations

import re

from .schema import LETTERS

_LEAD_RE = re.compile(r"(?:answer\s+is|answer\s*:)\s*:?", re.IGNORECASE)
_LETTER_RE = re.compile(r"^\(?([A-Za-z])\s*(?:\)|\.|:|\))?$")
_LETTER_TEXT_RE = re.compile(r"^\(?([A-Za-z])(?:\)|\.|:)\s*(.+)$")
_STRIP_CHARS = " \t\r\n\"'`*"


def _clean(s: str) -> str:
    s = s.strip(_STRIP_CHARS)
    s = s.rstrip(".:,;!").strip(_STRIP_CHARS)
    return s


def _norm_text(s: str) -> str:
    s = _clean(s).lower()
    s = re.sub(r"\s+", " ", s)
    if s.startswith("the "):
        s = s[4:]
    return s


def extract_choice(prediction: str | None, choices: list[str]) -> int | None:
    """Index of the chosen option in ``choices``, or ``None`` for a parse failure."""
    if prediction is None:
        return None
    text = str(prediction).strip()
    if not text:
        return None
    leads = list(_LEAD_RE.finditer(text))
    if leads:
        text = text[leads[-1].end() :]
    text = _clean(text)
    if not text:
        return None
    n = len(choices)

    m = _LETTER_RE.match(text)
    if m:
        k = LETTERS.index(m.group(1).upper())
        if k < n:
            return k
        # a single out-of-range letter may still be an option text (e.g. choices "x"/"y"); fall through

    m = _LETTER_TEXT_RE.match(text)
    if m:
        k = LETTERS.index(m.group(1).upper())
        rest = _norm_text(m.group(2))
        if k < n and rest == _norm_text(choices[k]):
            return k
        # "(B) something else": not consistent; only the whole-text match below may still apply

    t = _norm_text(text)
    hits = [i for i, c in enumerate(choices) if _norm_text(c) == t]
    if len(hits) == 1:
        return hits[0]
    return None


def extract_letter(prediction: str | None, choices: list[str]) -> str | None:
    """The chosen option as ``"(B)"`` (the dataset's answer form), or ``None`` for a parse failure."""
    k = extract_choice(prediction, choices)
    return None if k is None else f"({LETTERS[k]})"
