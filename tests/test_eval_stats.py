"""The bootstrap intervals of cambrian.eval.stats, checked against values computed by hand."""

import math

import numpy as np
import pytest

from cambrian.eval.stats import (
    Strata,
    bootstrap_mean,
    bootstrap_paired_diff,
    bootstrap_stratified,
    strata_interval,
    strata_paired_diff,
)


def test_constant_scores_have_a_zero_width_interval():
    iv = bootstrap_mean([1, 1, 1, 1])
    assert (iv.value, iv.low, iv.high, iv.n) == (1.0, 1.0, 1.0, 4)
    assert iv.excludes(0.5) and not iv.excludes(1.0)


def test_mean_interval_matches_the_normal_approximation_for_a_large_set():
    # 400 questions, half right: the 95% half-width is 1.96 * sqrt(0.25 / 400) = 0.049
    iv = bootstrap_mean([1, 0] * 200, resamples=4000)
    assert iv.value == 0.5
    half = 1.96 * math.sqrt(0.25 / 400)
    assert iv.low == pytest.approx(0.5 - half, abs=0.01)
    assert iv.high == pytest.approx(0.5 + half, abs=0.01)


def test_the_same_seed_gives_the_same_interval_and_another_seed_may_not():
    scores = np.random.default_rng(3).integers(0, 2, 60)
    assert bootstrap_mean(scores, seed=1) == bootstrap_mean(scores, seed=1)
    assert bootstrap_mean(scores, seed=1).value == bootstrap_mean(scores, seed=2).value


def test_stratified_uses_the_combine_formula_on_the_task_means():
    # CV-Bench's overall: the mean of the 2D average (Count, Relation) and the 3D average (Depth, Distance)
    per_task = {"Count": [1, 1, 0, 0], "Relation": [1, 1, 1, 1], "Depth": [0, 0], "Distance": [1, 0]}

    def cvbench(m):
        return ((m["Count"] + m["Relation"]) / 2 + (m["Depth"] + m["Distance"]) / 2) / 2

    iv = bootstrap_stratified(per_task, cvbench)
    # by hand: 2D = (0.5 + 1) / 2 = 0.75, 3D = (0 + 0.5) / 2 = 0.25, overall 0.5
    assert iv.value == pytest.approx(0.5)
    assert iv.n == 12
    assert iv.low < 0.5 < iv.high
    # the constant tasks never move: the lowest possible draw has Count 0 and Distance 0 -> (0.5 + 0) / 2 = 0.25
    assert iv.low >= 0.25 - 1e-12 and iv.high <= 0.75 + 1e-12
    # default combine: the plain mean of task means = (0.5 + 1 + 0 + 0.5) / 4
    assert bootstrap_stratified(per_task).value == pytest.approx(0.5)


def test_paired_difference_accounts_for_the_pairing():
    own = [1] * 30 + [0] * 10
    other = [1] * 20 + [0] * 20  # right on a subset of the questions own gets right
    d = bootstrap_paired_diff(own, other)
    assert d.value == pytest.approx(0.25)
    assert d.excludes(0.0)
    # identical conditions: every resample's difference is 0
    same = bootstrap_paired_diff(own, own)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes(0.0)


def test_paired_beats_overlapping_intervals_on_the_same_questions():
    # 40 questions: own right on 26, other right on 20 of those 26. Separately the two 95% intervals overlap
    # (each is about +-15 points wide), yet every question moved the same way: the paired difference 6/40 has an
    # interval above 0 (a resample with none of the 6 has probability (34/40)^40 = 0.15%)
    own = [1] * 26 + [0] * 14
    other = [1] * 20 + [0] * 20
    a, b = bootstrap_mean(own), bootstrap_mean(other)
    assert a.low < b.high  # the intervals overlap: "disjoint intervals" would not support own > other
    d = bootstrap_paired_diff(own, other)
    assert d.value == pytest.approx(0.15) and d.low > 0 and d.excludes(0.0)


def test_strata_helpers_are_the_stratified_and_paired_bootstraps():
    def two_by_two(m):
        return (m["2D"] + m["3D"]) / 2

    a = Strata({"2D": [1, 1, 0, 1], "3D": [1, 0]}, two_by_two)
    b = Strata({"2D": [0, 1, 0, 1], "3D": [0, 0]}, two_by_two)
    assert a.point() == pytest.approx((0.75 + 0.5) / 2) and a.n == 6
    assert strata_interval(a, seed=4) == bootstrap_stratified(a.values, two_by_two, seed=4)
    d = strata_paired_diff(a, b, seed=4)
    # the formula is linear in the strata means: the difference is the formula of the per-question differences
    assert d.value == pytest.approx(a.point() - b.point())
    assert d == bootstrap_stratified({"2D": [1, 0, 0, 0], "3D": [1, 0]}, two_by_two, seed=4)
    one = strata_paired_diff(Strata({"x": [1, 1, 0]}, lambda m: m["x"]), Strata({"x": [0, 1, 0]}, lambda m: m["x"]))
    assert one == bootstrap_paired_diff([1, 1, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="different question sets"):
        strata_paired_diff(a, Strata({"2D": [1], "3D": [1, 0]}, two_by_two))


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="no scores"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="pair them"):
        bootstrap_paired_diff([1, 0], [1])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean([1, float("nan")])
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean([1, 0], level=1.5)
