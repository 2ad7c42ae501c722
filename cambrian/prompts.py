"""One home for the text that tells a model how to answer: answer-format instructions, option lists, letters.

Used by the benchmarks (``cambrian.eval.benchmarks``), CV-Bench (``cambrian.cvbench``), the synthetic-scene data
export (``cambrian.data.scenes``) and the demo, so a training prompt and the evaluation prompt it prepares for are
built from the same strings. Standard library only: importing this module never imports torch.

The instruction strings are the ones the official Cambrian-1 evaluation scripts append after a ``"\\n"`` (their
``--question_extension`` defaults), byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

# ---- answer-format instructions (appended after "\n") ---------------------------------------------------------
SHORT = "Answer the question using a single word or phrase."  # GQA, POPE, MME, TextVQA, MMMU (open), ...
SHORT_NUMBER = "Answer the question using a single number or phrase."  # ChartQA
LETTER = "Answer with the option's letter from the given choices directly."  # MMBench, SEED, AI2D, MMMU, MMVP, CV-Bench
LETTER_ONLY = "Please answer directly with only the letter of the correct option and nothing else."  # SQA, MMStar
SHORT_DIRECT = "Give the short answer directly."  # DocVQA, OCRBench
COT = "First show your reasoning process and then give the final answer."  # MathVista multiple choice
SELECT_SUFFIX = " Select from the following choices."  # CV-Bench: appended to the question (same line)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ---- letters -------------------------------------------------------------------------------------------------
def letter(i: int) -> str:
    """Option letter of the 0-based index ``i``: 0 -> "A". An index outside A..Z is a ValueError."""
    if not 0 <= i < len(LETTERS):
        raise ValueError(f"option index {i} has no letter (0..{len(LETTERS) - 1})")
    return LETTERS[i]


def letters(n: int) -> list[str]:
    """The first ``n`` option letters: ``letters(3) == ["A", "B", "C"]``."""
    return [letter(i) for i in range(n)]


# ---- option lists --------------------------------------------------------------------------------------------
def option_lines(choices: Sequence[str]) -> str:
    """``"\\nA. c0\\nB. c1..."``: one line per option, each *preceded* by a newline, as the official scripts append
    them (so no options adds nothing)."""
    return "".join(f"\n{letter(i)}. {c}" for i, c in enumerate(choices))


def paren_option_lines(choices: Sequence[str]) -> str:
    """``"\\n(A) c0\\n(B) c1..."``: CV-Bench's option lines, each preceded by a newline."""
    return "".join(f"\n({letter(i)}) {c}" for i, c in enumerate(choices))


def with_instruction(body: str, instruction: str) -> str:
    """``body + "\\n" + instruction``: how every official script appends its answer-format instruction."""
    return f"{body}\n{instruction}"
