"""``--mc likelihood``: options of every multiple-choice benchmark, the readings, files and report placement."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_eval_benchmarks import FIXTURES

from cambrian.errors import InputError
from cambrian.eval.api import EvalSample, MCOptions, get_benchmark
from cambrian.eval.likelihood import choice_predictions, option_records, run_likelihood

MULTIPLE_CHOICE = {
    "ai2d",
    "mathvista",
    "mmbench",
    "mme",
    "mmmu",
    "mmstar",
    "mmvp",
    "pope",
    "realworldqa",
    "scienceqa",
    "seed",
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_option_reads_back_as_that_option(tmp_path, name):
    """For every sample a benchmark calls multiple-choice, the reply ``prediction(k)`` is scored right for exactly
    one k by the benchmark's own official scorer (the gold option), so a likelihood choice is scored faithfully."""
    path, _, _ = FIXTURES[name](tmp_path)
    bench = get_benchmark(name)
    samples = bench.load(str(path))
    mcs = [bench.mc_options(s) for s in samples]
    assert any(mcs) == (name in MULTIPLE_CHOICE)
    for s, mc in zip(samples, mcs):
        if mc is None:
            continue
        right = []
        for k in range(len(mc)):
            m = bench.score([s], {s.idx: mc.prediction(k)})
            right.append(m.get("question_accuracy", m.get("accuracy", 0)) > 0)
        assert sum(right) == 1, (s.idx, mc, right)


def test_mc_options_validation():
    assert MCOptions(("x", "y"), ("A", "B")).prediction(1) == "B"
    assert MCOptions(("x", "y")).prediction(1) == "y" and len(MCOptions(("x", "y"))) == 2
    with pytest.raises(ValueError, match="texts or letters"):
        MCOptions(None)
    with pytest.raises(ValueError, match="2 option texts but 3 letters"):
        MCOptions(("x", "y"), ("A", "B", "C"))


def _cv(idx, task, typ, choices, answer):
    return EvalSample(
        idx=idx,
        prompt=f"q{idx}",
        images=[],
        answer=answer,
        meta={"type": typ, "task": task, "source": "Synth" + typ, "choices": choices},
    )


class FakeScorer:
    """Log-probabilities by hand: letters prefer the gold letter, texts prefer the *first* option."""

    name = "fake"

    def __init__(self, gold):
        self.gold, self.calls = gold, []

    def score_options(self, requests, candidates):
        self.calls.append([len(c) for c in candidates])
        out = []
        for r, cands in zip(requests, candidates):
            if all(len(c) == 1 and c.isupper() for c in cands):
                g = self.gold[r.prompt]
                out.append([0.0 if k == g else -2.0 for k in range(len(cands))])
            else:
                out.append([-1.0 - k for k in range(len(cands))])
        return out


def test_readings_scored_by_the_official_rules_and_kept_out_of_the_table(tmp_path):
    from cambrian.eval.report import load_run, other_scorer_rows, write_report

    cv = [
        _cv(0, "Count", "2D", ["3", "0", "1"], "(C)"),
        _cv(1, "Relation", "2D", ["left", "right"], "(A)"),
        _cv(2, "Depth", "3D", ["red cube", "blue sphere"], "(B)"),
    ]
    attr = [
        EvalSample(idx=0, prompt="a0", answer="red", meta={"category": "color", "choices": ["blue", "red"]}),
        EvalSample(idx=1, prompt="a1", answer="cube", meta={"category": "shape", "choices": ["cube", "sphere"]}),
    ]
    model = FakeScorer({"q0": 2, "q1": 0, "q2": 1})
    benches = [get_benchmark("cvbench-synth"), get_benchmark("synth-attribute")]
    res = run_likelihood(
        model, benches, None, tmp_path, samples_by_bench={"cvbench-synth": cv, "synth-attribute": attr}
    )
    lik = res["cvbench-synth"]["likelihood"]
    assert lik["overall_likelihood"] == 1.0 and lik["per_task_likelihood"] == {
        "Count": 1.0,
        "Depth": 1.0,
        "Relation": 1.0,
    }
    # texts: the first option everywhere -> right only for Relation (2D 1/2, 3D 0/1)
    txt = res["cvbench-synth"]["likelihood_text"]
    assert txt["overall_likelihood_text"] == pytest.approx(0.25) and txt["scorer"] == "likelihood_text"
    assert set(res["synth-attribute"]) == {"likelihood"}  # its prompt asks for the text: one reading
    assert res["synth-attribute"]["likelihood"]["accuracy_likelihood"] == 0.5
    recs = [json.loads(x) for x in (tmp_path / "cvbench-synth" / "likelihood.jsonl").read_text().splitlines()]
    assert recs[0]["letters"] == [-2.0, -2.0, 0.0] and recs[0]["texts"] == [-1.0, -2.0, -3.0]
    m = json.loads((tmp_path / "cvbench-synth" / "metrics.likelihood.json").read_text())
    assert m["scorer"] == "likelihood" and m["primary_metric"] == "overall_likelihood"
    run = load_run(tmp_path)
    assert run.metrics == {}  # nothing official: no paper-table cell
    rows = {(b, s): v for _, b, s, _, v in other_scorer_rows([run])}
    assert rows[("cvbench-synth", "likelihood")] == 100.0 and rows[("cvbench-synth", "likelihood_text")] == 25.0
    out = write_report([tmp_path], tmp_path / "rep", plots=False)
    assert "Other scorers" in out["table"] and "likelihood_text" in out["table"]


def test_open_samples_are_skipped_and_a_generating_only_model_is_refused():
    bench = get_benchmark("mmmu")
    open_q = EvalSample(idx="o", prompt="What is 2+2?", answer="4", meta={"mc": False})
    mc_q = EvalSample(idx="m", prompt="Pick. Options:\nA. x\nB. y\nAnswer", answer="B", meta={"mc": True})
    model = FakeScorer({"Pick. Options:\nA. x\nB. y\nAnswer": 1})
    recs = option_records(model, bench, [open_q, mc_q])
    assert [r["idx"] for r in recs] == ["m"]
    preds = choice_predictions(bench, [open_q, mc_q], recs)
    assert preds["likelihood"] == {"m": "B"} and preds["likelihood_text"] == {"m": "A"}
    with pytest.raises(InputError, match="needs a model that can score continuations"):
        option_records(SimpleNamespace(name="remote"), bench, [mc_q])


def test_cli_eval_run_mc_likelihood_on_the_tiny_model(tmp_path):
    """End to end: a random tiny model answers a CV-Bench-Synth directory by likelihood through the CLI."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from cambrian.cli.main import main

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 0, 0)).save(buf, format="PNG")
    rows = [
        {
            "idx": i,
            "type": "2D",
            "task": "Relation",
            "image": {"bytes": buf.getvalue(), "path": f"{i}.png"},
            "question": "Where?",
            "choices": ["left", "right"],
            "answer": "(A)",
            "prompt": "Where? Select from the following choices.\n(A) left\n(B) right",
            "filename": f"img/2D/relation/s_{i}.png",
            "source": "Synth2D",
        }
        for i in range(3)
    ]
    d = tmp_path / "data" / "cvbench-synth"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), d / "test_2d.parquet")
    rc = main(
        [
            "eval", "run", "--model", "tiny", "--bench", "cvbench-synth", "--data-root", str(tmp_path / "data"),
            "--out", str(tmp_path / "run"), "--mc", "likelihood", "--no-progress", "--batch-size", "2",
        ]
    )  # fmt: skip
    assert rc == 0
    m = json.loads((tmp_path / "run" / "cvbench-synth" / "metrics.likelihood.json").read_text())
    assert m["metrics"]["n"] == 3 and 0.0 <= m["metrics"]["overall_likelihood"] <= 1.0
    assert (tmp_path / "run" / "cvbench-synth" / "metrics.likelihood_text.json").exists()
