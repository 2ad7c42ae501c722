"""Response-format instructions against the "answer machine" (paper App. G.2, Table 16).

A model trained on lots of short-answer VQA data learns to answer everything curtly. Cambrian-7M adds a
response-format instruction to the questions whose reference answers are short, so the model learns *when* a
short answer is asked for. We append the instruction to the human turn (``"<question>\\n<instruction>"``), the
layout of ``Cambrian7M_withsystemprompt.jsonl`` and LLaVA-1.5.

``RESPONSE_FORMATS``: name -> instruction (Table 16 numbering in the comments; #5 has #1's wording, #6's wording is
not in our reference so it is not offered). ``QUESTION_TYPES``: the ordered rules ``auto`` mode applies to a
(question, answer) pair; the first that matches picks the instruction, and answers longer than
``short_answer_words`` words get none.

The strings shared with evaluation come from :mod:`cambrian.prompts` (the official scripts' wording).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ... import prompts as P

RESPONSE_FORMATS: dict[str, str] = {
    "word_or_phrase": P.SHORT,  # 1 (and 5)
    "number_or_phrase": P.SHORT_NUMBER,  # 2
    "option_letter": P.LETTER,  # 3
    "short_direct": P.SHORT_DIRECT,  # 4
    "html": "Directly provide the HTML code.",  # 7
    "reasoning": P.COT,  # 8
    "unanswerable": "When the provided information is insufficient, respond with 'Unanswerable'. " + P.SHORT,  # 9
    "letter": "Answer with the letter.",  # 10
}

# an instruction of this kind already in the question (any of ours, or a common variant): never add a second one
_PRESENT = re.compile(
    "|".join(
        [re.escape(t) for t in RESPONSE_FORMATS.values()]
        + [
            r"\banswer (?:the question )?(?:using|with) (?:a single|one) (?:word|number|phrase)",
            r"\banswer with the (?:option'?s? )?letter",
            r"\banswer (?:the question )?(?:briefly|in (?:a|one) (?:word|sentence))",
            r"\bgive the short answer",
        ]
    ),
    re.IGNORECASE,
)
# an option list: at least two lines (or inline items) like "A. x", "(B) y", "C) z", "D: w"
_OPTION = re.compile(r"(?:^|\n|\s)\(?([A-H])[\.\):]\s+\S", re.MULTILINE)
_LETTER = re.compile(r"^\(?([A-Za-z])\)?\.?$")
_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?%?$")


def has_instruction(question: str) -> bool:
    return _PRESENT.search(question) is not None


def has_options(question: str) -> bool:
    letters = {m.group(1) for m in _OPTION.finditer(question)}
    return len(letters) >= 2 and "A" in letters and "B" in letters


@dataclass(frozen=True)
class QuestionType:
    name: str
    prompt: str  # key of RESPONSE_FORMATS
    matches: Callable[[str, str], bool]  # (question, stripped answer) -> bool


def _is_option_letter(q: str, a: str) -> bool:
    m = _LETTER.match(a)
    return m is not None and m.group(1).isupper() and has_options(q)


def _is_bare_letter(q: str, a: str) -> bool:
    m = _LETTER.match(a)
    return m is not None and m.group(1).isupper()


# first match wins; a short answer that matches none of the specific rules gets "word_or_phrase"
QUESTION_TYPES: tuple[QuestionType, ...] = (
    QuestionType("multiple_choice", "option_letter", _is_option_letter),
    QuestionType("letter", "letter", _is_bare_letter),
    QuestionType("number", "number_or_phrase", lambda q, a: _NUMBER.match(a) is not None),
    QuestionType("short_answer", "word_or_phrase", lambda q, a: True),
)


def classify(question: str, answer: str) -> QuestionType:
    """The question type of a (question, short answer) pair (the caller checks the answer is short)."""
    a = answer.strip()
    for qt in QUESTION_TYPES:
        if qt.matches(question, a):
            return qt
    return QUESTION_TYPES[-1]  # pragma: no cover - the last rule always matches


def answer_words(answer: str) -> int:
    return len(answer.split())


def with_instruction(question: str, prompt: str) -> str:
    """``question`` with the instruction of ``prompt`` (a RESPONSE_FORMATS key) on its own last line."""
    return P.with_instruction(question.rstrip(), RESPONSE_FORMATS[prompt])
