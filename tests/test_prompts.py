"""cambrian.prompts: the one home of answer-format instructions, option lines and letters (torch-free)."""

import subprocess
import sys

import pytest

from cambrian.prompts import (
    LETTER,
    LETTER_ONLY,
    SHORT,
    letter,
    letters,
    option_lines,
    paren_option_lines,
    with_instruction,
)


def test_import_is_standard_library_only():
    code = "import sys, cambrian.prompts; print(sorted(m for m in ('torch', 'numpy', 'transformers', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_letters_and_option_lines():
    assert letter(0) == "A" and letter(25) == "Z" and letters(3) == ["A", "B", "C"] and letters(0) == []
    with pytest.raises(ValueError, match="no letter"):
        letter(26)
    assert option_lines(["red", "blue"]) == "\nA. red\nB. blue" and option_lines([]) == ""
    assert paren_option_lines(["left", "right"]) == "\n(A) left\n(B) right"
    assert with_instruction("Q?", SHORT) == "Q?\nAnswer the question using a single word or phrase."
    assert LETTER == "Answer with the option's letter from the given choices directly."
    assert LETTER_ONLY == "Please answer directly with only the letter of the correct option and nothing else."


def test_cvbench_prompts_use_the_shared_instructions():
    """What the CV-Bench rows show a model: the question, the "(A) ..." options and the shared letter instruction."""
    from cambrian.cvbench import schema

    row = schema.format_prompt("Which is closer?", ["box", "ball"])
    assert row == "Which is closer? Select from the following choices.\n(A) box\n(B) ball"
    assert schema.model_prompt(row) == with_instruction(row, LETTER) == f"{row}\n{LETTER}"
