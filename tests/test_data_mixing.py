"""Data mixing: per-source caps and category ratios, hand-computed."""

from __future__ import annotations

import pytest

from cambrian.data.mixing import SourceSpec, build_mixture, cap_counts, plan_mixture


def test_cap_per_source():
    assert cap_counts({"a": 1_000_000, "b": 200_000}, 350_000) == {"a": 350_000, "b": 200_000}
    assert cap_counts({"a": 5}, None) == {"a": 5}


def test_ratios_hand_computed():
    src = {
        "ocr1": SourceSpec(600, "ocr"),
        "ocr2": SourceSpec(200, "ocr"),
        "gen": SourceSpec(1000, "general"),
        "lang": SourceSpec(50, "language"),
    }
    # caps: ocr1 400, ocr2 200, gen 400, lang 50
    # ratios ocr 2 : general 2 : language 1 -> max total limited by language: 50 * 5 / 1 = 250
    plan = plan_mixture(src, cap=400, ratios={"ocr": 2, "general": 2, "language": 1})
    # ocr 100 split 400:200 -> 66.67 / 33.33 -> 67 / 33 (largest remainder); general 100; language 50
    assert plan == {"ocr1": 67, "ocr2": 33, "gen": 100, "lang": 50}
    plan = plan_mixture(src, cap=400, ratios={"ocr": 2, "general": 2, "language": 1}, total=100)
    assert plan == {"ocr1": 27, "ocr2": 13, "gen": 40, "lang": 20}
    assert sum(plan.values()) == 100
    with pytest.raises(ValueError, match="exceeds"):
        plan_mixture(src, cap=400, ratios={"ocr": 1, "language": 1}, total=1000)
    with pytest.raises(ValueError, match="without sources"):
        plan_mixture(src, ratios={"math": 1})


def test_build_mixture_selection():
    sel = build_mixture([5, 3], [2, 3], seed=1)
    assert sel.shape == (5, 2)
    assert (sel[:, 0] == [0, 0, 1, 1, 1]).all()
    assert set(sel[2:, 1].tolist()) == {0, 1, 2}
    assert len(set(sel[:2, 1].tolist())) == 2 and sel[:2, 1].max() < 5
    assert (build_mixture([5, 3], [2, 3], seed=1) == sel).all()
