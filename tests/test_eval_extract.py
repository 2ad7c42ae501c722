"""Shared extraction helpers against hand-worked examples."""

import pytest

from cambrian.eval.rules import (
    anls,
    first_token,
    levenshtein,
    mcq_extract,
    normalize_vqa,
    relaxed_match,
    vqa_accuracy,
    within,
    yes_no,
)


def test_mcq_extract():
    assert mcq_extract("The answer is (B).") == "b"
    assert mcq_extract("Answer: C") == "c"
    assert mcq_extract("(a) Open", truncate=False) == "a) open"  # official: no truncation for MMVP
    assert mcq_extract("B.", strip_chars=".:,") == "b"
    assert mcq_extract("") == "" and mcq_extract(None) == ""


def test_first_token_and_yes_no():
    assert first_token("Yes, there is.") == "yes" and first_token("   ") == ""
    assert yes_no("Yes") == "yes" and yes_no("no, it is not") == "no" and yes_no("It is a dog") == "other"


def test_vqa_normalisation_and_accuracy():
    assert normalize_vqa("The Two dogs!") == "2 dogs"
    assert normalize_vqa("dont") == "don't"
    assert normalize_vqa("3.5") == "3.5" and normalize_vqa("end.") == "end"
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.9 / 3)  # 9 of 10 subsets hold one match
    assert vqa_accuracy("x", []) == 0.0


def test_numbers_relaxed_anls():
    assert within("95.1", "100") and not within("94.9", "100") and within("0", "0")
    assert relaxed_match("1,050", "1000") and not relaxed_match("1,051", "1000")
    assert relaxed_match("Yes", "yes") and not relaxed_match("no", "yes")
    assert levenshtein("kitten", "sitting") == 3
    assert anls("kitten", ["sitting"]) == pytest.approx(1 - 3 / 7)
    assert anls("abc", ["xyz"]) == 0.0 and anls("", [""]) == 1.0
