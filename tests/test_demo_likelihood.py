"""The demo's option-likelihood reading (``likelihood: true``): per-question scores read from the likelihood records,
its figures / intervals / differences from hand-made scores, the wiring of the three conditions, and that the
report keeps it apart from the official generation figures. The scoring itself is tested by hand in
``tests/test_eval_likelihood.py``."""

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cambrian.demo import report
from cambrian.demo.config import make_config, parse_settings
from cambrian.demo.report import render_markdown, summary_table, write_report
from cambrian.demo.stats import image_use_statistics, read_likelihood_scores
from cambrian.eval.api import EvalSample, get_benchmark

CONDS = ("own", "other", "blind")


def _cv(idx, task, answer, k=3, scene=None):
    typ = "2D" if task in ("Count", "Relation") else "3D"
    meta = {"type": typ, "task": task, "source": f"Synth{typ}", "choices": [f"c{j}" for j in range(k)]}
    if scene is not None:
        meta["source_filename"] = scene
    return EvalSample(idx=idx, prompt=f"q{idx}", images=[], answer=f"({answer})", meta=meta)


def _records(path: Path, recs) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "likelihood.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


# ---------------------------------------------------------------------------------------------- per-question scores
def test_scores_come_from_the_letters_where_the_prompt_asks_for_them(tmp_path):
    cv = [_cv(0, "Count", "B"), _cv(1, "Relation", "A"), _cv(2, "Depth", "C"), _cv(3, "Distance", "A")]
    # letters pick B, B, C; the texts would pick A, A, A (right for question 1 only); question 3 has no record
    recs = [
        {"idx": 0, "letters": [-2.0, -0.1, -3.0], "texts": [-0.1, -5.0, -5.0]},
        {"idx": 1, "letters": [-2.0, -0.1, -3.0], "texts": [-0.1, -5.0, -5.0]},
        {"idx": 2, "letters": [-2.0, -1.0, -0.5], "texts": [-0.1, -5.0, -5.0]},
    ]
    d = _records(tmp_path / "cvbench-synth", recs)
    assert read_likelihood_scores(get_benchmark("cvbench-synth"), cv, d) == [1.0, 0.0, 1.0, 0.0]

    attr = [
        EvalSample(idx="a", prompt="a", answer="red", meta={"category": "color", "choices": ["blue", "red"]}),
        EvalSample(idx="b", prompt="b", answer="cube", meta={"category": "shape", "choices": ["cube", "sphere"]}),
    ]
    d = _records(
        tmp_path / "synth-attribute",
        [{"idx": "a", "letters": None, "texts": [-0.2, -1.0]}, {"idx": "b", "letters": None, "texts": [-0.2, -1.0]}],
    )
    assert read_likelihood_scores(get_benchmark("synth-attribute"), attr, d) == [0.0, 1.0]


# ---------------------------------------------------------------------------------------------- figures by hand
def _hand_questions():
    """CV-Bench-Synth: 2D 4 of 6 right (Count 3/4, Relation 1/2), 3D 1 of 2 (Depth 1/1, Distance 0/1) with the own
    image; other and blind all wrong except one Count question."""
    tasks = ["Count"] * 4 + ["Relation"] * 2 + ["Depth", "Distance"]
    strata = ["2D:Synth2D"] * 6 + ["3D:Synth3D"] * 2
    own = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    other = [1.0] + [0.0] * 7
    return {"cvbench-synth": {"task": tasks, "stratum": strata, "own": own, "other": other, "blind": list(other)}}


def test_likelihood_figures_by_hand():
    s = image_use_statistics(_hand_questions())
    acc = s["accuracy"]["cvbench-synth"]
    # official formula: mean of 2D (4/6) and 3D (1/2), not the micro mean 5/8
    assert acc["overall"]["own"] == pytest.approx((4 / 6 + 1 / 2) / 2)
    assert acc["overall"]["other"] == pytest.approx((1 / 6 + 0) / 2)
    assert acc["Count"] == {"own": 0.75, "other": 0.25, "blind": 0.25}
    assert acc["Depth"]["own"] == 1.0 and acc["Distance"]["own"] == 0.0
    d = s["differences"]["cvbench-synth"]["overall"]["own-other"]
    assert d["value"] == pytest.approx((4 / 6 + 1 / 2) / 2 - 1 / 12, abs=1e-4)
    assert s["n"]["cvbench-synth"] == {"Count": 4, "Relation": 2, "Depth": 1, "Distance": 1, "overall": 8}
    for task, ivs in s["intervals"]["cvbench-synth"].items():
        for c in CONDS:
            lo, hi = ivs[c]
            assert lo <= acc[task][c] <= hi, (task, c)


# ---------------------------------------------------------------------------------------------- the three conditions
class ImageReader:
    """A scorer by hand: with an image ``("img", k)`` the option ``k`` is the most likely; with no image, option 0."""

    name = "reader"

    def __init__(self):
        self.requests = []

    def score_options(self, requests, candidates):
        out = []
        for r, cands in zip(requests, candidates):
            self.requests.append((r.prompt, tuple(r.images)))
            k = r.images[0][1] if r.images else 0
            out.append([0.0 if j == k else -1.0 for j in range(len(cands))])
        return out


def test_the_three_conditions_reuse_the_loaded_samples(tmp_path):
    from cambrian.demo.pipeline import evaluate_likelihood
    from cambrian.eval.conditions import with_other_images

    gold = [0, 1, 2, 1, 0, 2]
    tasks = ["Count", "Count", "Relation", "Depth", "Distance", "Depth"]
    own = [_cv(i, t, "ABC"[g], scene=f"s{i}") for i, (t, g) in enumerate(zip(tasks, gold))]
    own = [
        EvalSample(idx=s.idx, prompt=s.prompt, images=[("img", g)], answer=s.answer, meta=s.meta)
        for s, g in zip(own, gold)
    ]
    other = with_other_images(own, 0)
    bench = get_benchmark("cvbench-synth")
    reader = ImageReader()
    loaded = {
        "benches": [bench],
        "samples": {"own": {bench.name: own}, "other": {bench.name: other}, "blind": {bench.name: own}},
        "memo": None,
        "em": reader,
    }
    model = SimpleNamespace(features_from=lambda memo: contextlib.nullcontext())
    res = evaluate_likelihood(model, make_config(eval_batch=4), tmp_path, "cpu", False, loaded)
    q = res["questions"]["cvbench-synth"]
    assert q["own"] == [1.0] * 6
    assert q["other"] == [float(o.images[0][1] == g) for o, g in zip(other, gold)]
    assert q["other"] != q["own"]  # the pairing moved some answers
    assert q["blind"] == [float(g == 0) for g in gold]
    assert q["task"] == tasks and q["idx"] == [str(i) for i in range(6)]
    assert set(res["metrics"]) == set(CONDS) and set(res["seconds"]) == set(CONDS)
    assert res["metrics"]["own"]["cvbench-synth"]["likelihood"]["overall_likelihood"] == 1.0
    for c in CONDS:
        assert (tmp_path / "eval" / "likelihood" / c / "cvbench-synth" / "likelihood.jsonl").is_file()
    # blind requests carry no image; own and other the ones the samples hold
    blind_reqs = [imgs for _, imgs in reader.requests if not imgs]
    assert len(blind_reqs) == 2 * 6  # letters and texts, once each per question


# ---------------------------------------------------------------------------------------------- report: kept apart
def _results(with_likelihood=True):
    from tests.test_demo import _fake_results

    r = _fake_results()
    if with_likelihood:
        s = image_use_statistics(_hand_questions())
        r.update(
            likelihood_accuracy=s["accuracy"],
            likelihood_intervals=s["intervals"],
            likelihood_n=s["n"],
            likelihood_differences=s["differences"],
            likelihood_metrics={c: {} for c in CONDS},
        )
    return r


def _section(md: str) -> str:
    i = md.index("## Option likelihood (not the official score)")
    return md[i : md.index("\nProbes:", i)]


def test_report_keeps_the_likelihood_figures_apart(tmp_path):
    plain, r = _results(False), _results()
    md, md0 = render_markdown(r), render_markdown(plain)
    sec = _section(md)
    # removing the section (and the plot note) gives the report of the same run without it: the official table,
    # the differences and the targets are untouched
    strip = lambda text: "\n".join(x for x in text.splitlines() if not x.startswith("Plots:"))
    assert strip(md.replace(sec, "")).replace("\n\n\n", "\n\n") == strip(md0)
    iv = r["likelihood_intervals"]["cvbench-synth"]["overall"]["own"]
    own = 100 * (4 / 6 + 1 / 2) / 2
    row = f"| cvbench-synth | overall (8) | {own:.1f} [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}] |"
    assert row in sec and row not in md.replace(sec, "")
    assert sec.rstrip().splitlines()[-1].startswith("- ")  # the supported-differences list
    # the generated own-image figure beside it, and the chance of the row
    assert "generated, own" in sec and sec.count("| 75.0 |") >= 1
    assert "| cvbench-synth | Count (4) | 75.0 [" in sec
    # targets come from image_use_accuracy only
    assert r["targets"] == plain["targets"]

    table = summary_table(r)
    assert table.index("option likelihood") > table.index("easyvqa")  # after the official rows
    assert "option likelihood" not in summary_table(plain)

    paths = write_report(tmp_path / "with", r)
    assert Path(paths["likelihood_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(Path(paths["results"]).read_text())
    for task, v in data["likelihood_accuracy"]["cvbench-synth"].items():
        assert set(v) == set(CONDS)
        assert all(len(data["likelihood_intervals"]["cvbench-synth"][task][c]) == 2 for c in CONDS)
        assert set(data["likelihood_differences"]["cvbench-synth"][task]) == {"own-other", "own-blind"}
    assert data["image_use_accuracy"] == json.loads(json.dumps(plain["image_use_accuracy"]))
    p0 = write_report(tmp_path / "without", plain)
    assert "likelihood_png" not in p0 and not (tmp_path / "without" / "likelihood.png").exists()
    assert "Option likelihood" not in md0


def test_likelihood_plot_has_its_own_error_bars(monkeypatch, tmp_path):
    import matplotlib.axes

    r = _results()
    seen, titles = [], []
    real_bar, real_title = matplotlib.axes.Axes.bar, matplotlib.axes.Axes.set_title

    def bar(self, x, height, *a, **k):
        seen.append((np.asarray(height), k.get("yerr")))
        return real_bar(self, x, height, *a, **k)

    def title(self, text, *a, **k):
        titles.append(text)
        return real_title(self, text, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", title)
    report.plot_accuracy(r, tmp_path / "l.png", report.LIKELIHOOD)
    rows = report.accuracy_rows(r, report.LIKELIHOOD)
    assert [t for _, t, _, _ in rows] == ["Count", "Relation", "Depth", "Distance", "overall"]
    i = [t for _, t, _, _ in rows].index("overall")
    heights, yerr = seen[0]  # own
    v = r["likelihood_accuracy"]["cvbench-synth"]["overall"]["own"]
    lo, hi = r["likelihood_intervals"]["cvbench-synth"]["overall"]["own"]
    assert heights[i] == pytest.approx(v) and yerr[:, i] == pytest.approx([v - lo, hi - v])
    assert "not the official score" in titles[0]


# ---------------------------------------------------------------------------------------------- the setting
def test_likelihood_is_on_in_quick_off_in_the_default_and_switchable():
    # the default preset leaves it out for its 20-minute budget; --quick runs it so CI covers the path end to end
    assert not make_config().likelihood and make_config(quick=True).likelihood
    assert parse_settings(["likelihood=true"]) == {"likelihood": True}
    assert make_config(settings=parse_settings(["likelihood=true"])).likelihood
    assert not make_config(quick=True, settings=parse_settings(["likelihood=false"])).likelihood
