"""``cambrian eval run --constrained``: every multiple-choice answer generated under a grammar of its options (in
process and through `cambrian serve` with the OpenAI adapter), written and scored apart from the official results."""

from __future__ import annotations

import json

import pytest
from helpers import sensitive_tiny_model
from test_eval_benchmarks import FIXTURES

from cambrian.eval.adapters import CambrianEvalModel, OpenAIChatModel
from cambrian.eval.api import GenerationOptions, GenerationRequest, get_benchmark
from cambrian.eval.report import load_run
from cambrian.eval.runner import read_predictions, run_benchmarks

pytest.importorskip("xgrammar")


@pytest.fixture(scope="module")
def model():
    return sensitive_tiny_model()


def _options(bench, samples):
    return {s.idx: [m.prediction(k) for k in range(len(m))] for s in samples if (m := bench.mc_options(s))}


@pytest.mark.parametrize("name", ["mmbench", "scienceqa"])
def test_constrained_answers_are_options_and_scored_apart(tmp_path, model, name):
    path, _, _ = FIXTURES[name](tmp_path)
    bench = get_benchmark(name)
    samples = bench.load(str(path))
    em = CambrianEvalModel(model, name="tiny")
    out = tmp_path / "run"
    run_benchmarks(em, [bench], None, out, samples_by_bench={name: samples}, progress=False, batch_size=3)
    res = run_benchmarks(
        em, [bench], None, out, samples_by_bench={name: samples}, progress=False, batch_size=3, constrained=True
    )
    free = read_predictions(out / name / "predictions.jsonl")
    con = read_predictions(out / name / "predictions.constrained.jsonl")
    options = _options(bench, samples)
    assert options and all(con[i] in opts for i, opts in options.items())
    assert any(free[i] not in opts for i, opts in options.items())  # the random model does not answer in format
    metrics = json.loads((out / name / "metrics.constrained.json").read_text())
    key = f"{bench.primary_metric}_constrained"
    assert metrics["scorer"] == "constrained" and metrics["primary_metric"] == key
    assert key in metrics["metrics"] and res[name][key] == metrics["metrics"][key]
    assert json.loads((out / name / "metrics.json").read_text())["scorer"] == "official"  # untouched, its own
    run = load_run(out)
    assert name in run.metrics and (name, "constrained") in run.other_scorers  # apart from the paper-style table
    with pytest.raises(ValueError, match="not sharded"):
        run_benchmarks(em, [bench], None, out, samples_by_bench={name: samples}, shard=(0, 2), constrained=True)


def test_openai_adapter_sends_the_choices_and_serve_honours_them(model):
    pytest.importorskip("fastapi")
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    reqs = [
        GenerationRequest("Which one? A. red B. blue", choices=["A", "B"]),
        GenerationRequest("Colour?", choices=["red", "green", "blue"]),
        GenerationRequest("Say something"),
    ]
    opts = GenerationOptions(max_new_tokens=8)
    api = OpenAIChatModel("http://unused/v1", "tiny")
    assert api.payload(reqs[0], opts)["structured_outputs"] == {"choice": ["A", "B"]}
    assert "structured_outputs" not in api.payload(reqs[2], opts)
    local = CambrianEvalModel(model).generate(reqs, opts)
    with ServerThread(model, ServeSettings(model_name="tiny", default_temperature=0.0)) as srv:
        remote = OpenAIChatModel(srv.base_url, "tiny").generate(reqs, opts)
    assert remote == local and local[0] in ("A", "B") and local[1] in ("red", "green", "blue")
