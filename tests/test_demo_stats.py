"""The demo's statistics (``cambrian.demo.stats``): bootstrap intervals on the own / other / blind figures against
cases computed by hand, the paired-difference rule, the report's lines, and the default demo's CV-Bench-Synth size."""

import json
from pathlib import Path

import numpy as np
import pytest

from cambrian.demo.report import (
    cvbench_set_line,
    difference_lines,
    image_use_accuracy,
    render_markdown,
    summary_table,
    write_report,
)
from cambrian.demo.stats import (
    image_use_statistics,
    question_labels,
    read_question_file,
    read_question_scores,
    row_strata,
    supported_lines,
    write_question_scores,
)
from cambrian.eval.api import EvalSample, get_benchmark


# ---------------------------------------------------------------------------------------------- fixtures
def _cv_samples(rows):
    """rows: (task, answer letter, number of choices) -> CV-Bench-Synth samples (2D: Count/Relation, 3D: the rest)."""
    out = []
    for i, (task, ans, k) in enumerate(rows):
        typ = "2D" if task in ("Count", "Relation") else "3D"
        meta = {"type": typ, "task": task, "source": f"Synth{typ}", "choices": [str(c) for c in range(k)]}
        out.append(EvalSample(idx=i, prompt="q", images=[], answer=f"({ans})", meta=meta))
    return out


def _questions(own, other, blind, tasks, strata=None):
    return {"task": list(tasks), "stratum": list(strata or tasks), "own": own, "other": other, "blind": blind}


# ---------------------------------------------------------------------------------------------- intervals
def test_all_right_and_all_wrong_have_zero_width_intervals():
    q = {"synth-attribute": _questions([1.0] * 6, [0.0] * 6, [1.0, 0.0] * 3, ["color", "shape"] * 3)}
    s = image_use_statistics(q)
    iv = s["intervals"]["synth-attribute"]
    assert iv["overall"]["own"] == [1.0, 1.0] and iv["color"]["own"] == [1.0, 1.0]
    assert iv["overall"]["other"] == [0.0, 0.0]
    # blind: colour questions all right, shape all wrong -> per task [1, 1] and [0, 0]; overall 0.5 inside (0, 1)
    assert iv["color"]["blind"] == [1.0, 1.0] and iv["shape"]["blind"] == [0.0, 0.0]
    assert 0.0 < iv["overall"]["blind"][0] <= 0.5 <= iv["overall"]["blind"][1] < 1.0
    assert s["n"]["synth-attribute"] == {"overall": 6, "color": 3, "shape": 3}


def test_two_questions_by_hand():
    # one right, one wrong: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% percentiles of 2000 resamples are 0 and 1
    q = {"synth-attribute": _questions([1.0, 0.0], [1.0, 0.0], [1.0, 0.0], ["color", "color"])}
    assert image_use_statistics(q)["intervals"]["synth-attribute"]["overall"]["own"] == [0.0, 1.0]


def test_cvbench_overall_resamples_within_each_source_by_hand():
    # 2D (Count, Relation) all right; 3D one right (Depth) one wrong (Distance): overall = (1 + 3D) / 2 where a
    # resampled 3D mean is 0, 1/2 or 1 -> overall 0.5, 0.75 or 1 (1/4, 1/2, 1/4): interval [0.5, 1.0]. A bootstrap
    # over the pooled questions would also draw 2D errors... there are none, but it would change the 2D / 3D counts
    rows = [("Count", "A", 4), ("Count", "B", 4), ("Relation", "A", 2), ("Depth", "A", 2), ("Distance", "B", 2)]
    samples = _cv_samples(rows)
    q = question_labels("cvbench-synth", samples)
    assert q["task"] == ["Count", "Count", "Relation", "Depth", "Distance"]
    assert q["stratum"] == ["2D:Synth2D"] * 3 + ["3D:Synth3D"] * 2
    q.update(own=[1.0, 1.0, 1.0, 1.0, 0.0], other=[0.0] * 5, blind=[1.0] * 5)
    s = image_use_statistics({"cvbench-synth": q})
    iv = s["intervals"]["cvbench-synth"]
    assert iv["overall"]["own"] == [0.5, 1.0]
    assert iv["Count"]["own"] == [1.0, 1.0] and iv["Distance"]["own"] == [0.0, 0.0]
    assert s["n"]["cvbench-synth"] == {"Count": 2, "Relation": 1, "Depth": 1, "Distance": 1, "overall": 5}
    assert row_strata("cvbench-synth", q, "own")["overall"].point() == pytest.approx(0.75)


def test_points_are_the_benchmarks_own_metrics():
    # the strata formulas reproduce image_use_accuracy's figures (the benchmarks' metrics) from the per-question
    # scores, for CV-Bench's official overall and easy-VQA's colour+shape micro mean
    rng = np.random.default_rng(0)
    tasks = ["Count"] * 7 + ["Relation"] * 5 + ["Depth"] * 4 + ["Distance"] * 3
    samples = _cv_samples([(t, "A", 2) for t in tasks])
    bench = get_benchmark("cvbench-synth")
    metrics = {}
    q = question_labels("cvbench-synth", samples)
    for cond in ("own", "other", "blind"):
        preds = {s.idx: "A" if rng.random() < 0.6 else "B" for s in samples}
        metrics[cond] = {"cvbench-synth": bench.score(samples, preds)}
        q[cond] = bench.question_scores(samples, preds)
    acc = image_use_accuracy(metrics)["cvbench-synth"]
    for cond in ("own", "other", "blind"):
        for task, st in row_strata("cvbench-synth", q, cond).items():
            assert st.point() == pytest.approx(acc[task][cond]), (task, cond)

    ev = get_benchmark("easyvqa")
    cats = ["color"] * 3 + ["shape"] * 5 + ["yes/no"] * 4
    es = [EvalSample(idx=i, prompt="q", images=[], answer="red", meta={"category": c}) for i, c in enumerate(cats)]
    eq = question_labels("easyvqa", es)
    em = {}
    for cond in ("own", "other", "blind"):
        preds = {s.idx: "red" if rng.random() < 0.5 else "blue" for s in es}
        em[cond] = {"easyvqa": ev.score(es, preds)}
        eq[cond] = ev.question_scores(es, preds)
    eacc = image_use_accuracy(em)["easyvqa"]
    for task, st in row_strata("easyvqa", eq, "own").items():
        assert st.point() == pytest.approx(eacc[task]["own"]), task
    assert set(image_use_statistics({"easyvqa": eq})["intervals"]["easyvqa"]) == set(eacc)


def test_question_scores_are_read_from_the_predictions(tmp_path):
    samples = _cv_samples([("Count", "A", 4), ("Relation", "B", 2), ("Depth", "A", 2)])
    d = tmp_path / "cvbench-synth"
    d.mkdir()
    (d / "predictions.jsonl").write_text(
        "".join(json.dumps({"idx": i, "prediction": p}) + "\n" for i, p in [(0, "A"), (1, "A")])
    )  # question 2 unanswered: scored 0, as the benchmark's metrics count it
    assert read_question_scores(get_benchmark("cvbench-synth"), samples, d) == [1.0, 0.0, 0.0]


def test_question_file_round_trip(tmp_path):
    q = {"synth-attribute": {"idx": ["a", "b"], **_questions([1.0, 0.0], [0.0, 0.0], [1.0, 1.0], ["color", "shape"])}}
    write_question_scores(tmp_path / "q.jsonl", q)
    back = read_question_file(tmp_path / "q.jsonl")
    assert back == q
    assert image_use_statistics(back) == image_use_statistics(q)


# ---------------------------------------------------------------------------------------------- differences
def test_paired_difference_supports_what_overlapping_intervals_do_not():
    # 40 colour questions: own right on 26, other right on 20 of them, blind identical to own
    own = [1.0] * 26 + [0.0] * 14
    other = [1.0] * 20 + [0.0] * 20
    s = image_use_statistics({"synth-attribute": _questions(own, other, list(own), ["color"] * 40)})
    iv, d = s["intervals"]["synth-attribute"]["color"], s["differences"]["synth-attribute"]["color"]
    assert iv["own"][0] < iv["other"][1]  # the separate intervals overlap
    oo = d["own-other"]
    assert oo["value"] == pytest.approx(0.15) and oo["low"] > 0 and oo["supported"]
    ob = d["own-blind"]
    assert (ob["value"], ob["low"], ob["high"], ob["supported"]) == (0.0, 0.0, 0.0, False)
    yes, no = supported_lines(s["differences"])
    assert any(x.startswith("synth-attribute color: own > other by +15.0 [") for x in yes)
    assert any(x.startswith("synth-attribute color: own - blind +0.0 [+0.0, +0.0]") for x in no)
    # fewer questions, the same proportions: the difference is no longer supported
    few = image_use_statistics(
        {"synth-attribute": _questions([1.0] * 3 + [0.0], [1.0, 1.0, 0.0, 0.0], [0.0] * 4, ["color"] * 4)}
    )
    assert not few["differences"]["synth-attribute"]["color"]["own-other"]["supported"]
    assert few["differences"]["synth-attribute"]["color"]["own-blind"]["supported"]  # 3/4 vs 0/4: every draw > 0


def test_a_negative_difference_is_named_as_such():
    s = image_use_statistics({"synth-attribute": _questions([0.0] * 30, [1.0] * 30, [0.0] * 30, ["shape"] * 30)})
    yes, _ = supported_lines(s["differences"])
    assert "synth-attribute shape: own < other by -100.0 [-100.0, -100.0]" in yes


# ---------------------------------------------------------------------------------------------- report
def _results_with_stats():
    from tests.test_demo import _fake_results

    r = _fake_results()
    rng = np.random.default_rng(1)
    own = [1.0] * 16 + [0.0] * 4
    q = {
        "synth-attribute": _questions(own, [float(x) for x in rng.integers(0, 2, 20)], [0.0] * 20, ["color"] * 20),
    }
    s = image_use_statistics(q)
    r["image_use_intervals"], r["image_use_n"], r["image_use_differences"] = s["intervals"], s["n"], s["differences"]
    r["statistics"] = s["method"]
    r["image_use_accuracy"]["synth-attribute"] = {"overall": {"own": 0.8, "other": 0.45, "blind": 0.0}}
    r["data"] = {
        "cvbench_synth": {
            "n": 12,
            "per_task": {"Count": 4, "Relation": 3, "Depth": 3, "Distance": 2},
            "scenes": 2,
            "max_per_image": {"Count": 2, "Relation": 2, "Depth": 6, "Distance": 4},
            "official_max_per_image": {"Count": 2, "Relation": 1, "Depth": 1, "Distance": 1},
        }
    }
    return r, s


def test_report_prints_intervals_and_the_supported_differences(tmp_path):
    r, s = _results_with_stats()
    md = render_markdown(r)
    lo, hi = s["intervals"]["synth-attribute"]["overall"]["own"]
    assert f"| synth-attribute | overall (20) | 80.0 [{100 * lo:.1f}, {100 * hi:.1f}] |" in md
    assert lo < 0.8 < hi
    assert "| synth-attribute | overall | " in md and "own − other | own − blind" in md
    d = s["differences"]["synth-attribute"]["overall"]["own-blind"]
    assert d["supported"] and f"**+80.0 [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]**" in md
    assert "Supported by the intervals:" in md and "- synth-attribute overall: own > blind by +80.0" in md
    # rows without intervals (this fixture's CV-Bench and easy-VQA) keep their plain figures
    assert "| easyvqa | colour | 90.0 | 10.0 | 0.0 | 12.5 |" in md
    assert "at most 2/2/6/4 questions per image" in md and "official builder's 2/1/1/1" in md
    assert "differences the paired 95% intervals support" in summary_table(r)
    paths = write_report(tmp_path, r)
    data = json.loads(Path(paths["results"]).read_text())
    assert data["image_use_intervals"]["synth-attribute"]["overall"]["own"] == [lo, hi]
    assert Path(paths["accuracy_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_statistics_and_with_official_caps():
    from tests.test_demo import _fake_results

    r = _fake_results()
    assert difference_lines(r) == [] and "Which differences hold" not in render_markdown(r)
    r, _ = _results_with_stats()
    r["data"]["cvbench_synth"]["max_per_image"] = dict(r["data"]["cvbench_synth"]["official_max_per_image"])
    assert cvbench_set_line(r).endswith("the official per-image caps.")
    r["image_use_differences"] = {
        "synth-attribute": {"overall": {"own-other": {"value": 0.01, "low": -0.1, "high": 0.1, "supported": False}}}
    }
    assert difference_lines(r) == ["none: every own-vs-other and own-vs-blind interval includes 0"]


def test_error_bars_are_drawn(monkeypatch, tmp_path):
    import matplotlib.axes

    from cambrian.demo import report

    r, s = _results_with_stats()
    seen = []
    real = matplotlib.axes.Axes.bar

    def bar(self, x, height, *a, **k):
        seen.append(k.get("yerr"))
        return real(self, x, height, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    report.plot_accuracy(r, tmp_path / "a.png")
    rows = report.accuracy_rows(r)
    i = [b for b, _, _, _ in rows].index("synth-attribute")
    lo, hi = s["intervals"]["synth-attribute"]["overall"]["own"]
    assert seen[0] is not None and seen[0][:, i] == pytest.approx([0.8 - lo, hi - 0.8])
    assert seen[0][:, 0].tolist() == [0.0, 0.0]  # a row without an interval gets no bar


# ---------------------------------------------------------------------------------------------- test-set size
def test_default_demo_has_150_cvbench_questions_per_task(tmp_path):
    """The default demo's CV-Bench-Synth (120 test scenes, the demo's per-image caps) has >= 150 questions per task:
    a change of the scene world or the builder that shrinks it fails here, not in a 15-minute demo run."""
    pytest.importorskip("pybullet")
    from cambrian.data.scenes import render_scenes
    from cambrian.demo.config import make_config
    from cambrian.demo.data import SCENE_CONFIG
    from cambrian.demo.pipeline import cvbench_test_set

    cfg = make_config()
    render_scenes(tmp_path / "test", cfg.test_scenes, seed=cfg.seed, split="test", config=SCENE_CONFIG,
                  progress=False, save_depth=False)  # fmt: skip
    info, _ = cvbench_test_set(cfg, tmp_path / "test", tmp_path / "cv")
    assert min(info["per_task"].values()) >= 150, info["per_task"]
    assert info["max_per_image"] != info["official_max_per_image"]  # said so in results.json and the report
    quick = make_config(quick=True)
    assert quick.cvbench_max_per_image is None  # the smoke run keeps the official caps and its small eval
