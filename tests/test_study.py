"""``cambrian study``: the study file and its expansion into runs (stable ids), the category averaging (the paper's,
MME-P / 20), the intervals (``cambrian.eval.stats``), resumption after a kill, and the command line. The real
nano study (assets, minutes) is ``test_study_quick.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from cambrian.eval.stats import bootstrap_mean, bootstrap_paired_diff, bootstrap_stratified
from cambrian.study import results
from cambrian.study.spec import StudySpec, expand, load_study
from cambrian.typed import ConfigError

STAGES = [
    {
        "name": "ground",
        "adapter": True,
        "recipe": {"stage": "ground", "data": [{"path": "{data}/ground.jsonl"}], "lr": 1e-3, "epochs": 1},
    },
    {
        "name": "stage2",
        "recipe": {"stage": 2, "trainable": ["llm."], "data": [{"path": "{data}/stage2.jsonl"}], "lr": 1e-4},
    },
]


def spec_dict(**over) -> dict:
    d = {
        "name": "t",
        "model": "tiny",
        "benchmarks": {"synth-text": {}},
        "stages": STAGES,
        "towers": {
            "a": {"encoder": "tiny-clip"},
            "b": "tiny-dinov2",
            "r": {"encoder": {"preset": "tiny-clip", "options": {"init": "random"}}, "supervision": "none"},
            "ocr": "ppocr-v4-det",
            "nopreset": {"encoder": None, "label": "EVA-CLIP"},
        },
        "connectors": {"sva": {}, "concat": {"type": "concat"}},
        "axes": [{"towers": [["r"], ["a"], ["a", "b"]], "connector": ["sva"]}],
        "control": "r",
    }
    d.update(over)
    return d


def make(**over) -> StudySpec:
    return StudySpec(**spec_dict(**over))


# ---- expansion -----------------------------------------------------------------------------------------------
def test_axes_product_in_a_stable_order_with_readable_ids():
    runs, skipped = expand(make(axes=[{"towers": [["a"], ["b"]], "connector": ["sva", "concat"], "seed": [0, 1]}]))
    assert not skipped
    assert [(r.axes["towers"], r.axes["connector"], r.axes["seed"]) for r in runs] == [
        (["a"], "sva", 0),
        (["a"], "sva", 1),
        (["a"], "concat", 0),
        (["a"], "concat", 1),
        (["b"], "sva", 0),
        (["b"], "sva", 1),
        (["b"], "concat", 0),
        (["b"], "concat", 1),
    ]
    assert runs[0].id.startswith("a__sva__frozen__ad1__s0__")
    assert len({r.id for r in runs}) == 8
    assert runs[2].model["connector"]["type"] == "concat" and runs[0].model["connector"]["type"] == "sva"


def test_run_ids_are_stable_and_change_with_what_shapes_training():
    a = {r.axes["seed"]: r.id for r in expand(make(axes=[{"towers": [["a"]], "seed": [0, 1]}]))[0]}
    b = {r.axes["seed"]: r.id for r in expand(make(axes=[{"towers": [["a"]], "seed": [0, 1]}]))[0]}
    assert a == b  # the same study gives the same ids (resume finds its runs)
    c = {r.axes["seed"]: r.id for r in expand(make(axes=[{"towers": [["a"]], "seed": [0, 2]}]))[0]}
    assert c[0] == a[0] and c[2] != a[1]  # a changed axis value is a new run; the others keep theirs
    stages = json.loads(json.dumps(STAGES))
    stages[1]["recipe"]["lr"] = 2e-4
    d = expand(make(axes=[{"towers": [["a"]], "seed": [0]}], stages=stages))[0][0].id
    assert d != a[0] and d.split("__")[:-1] == a[0].split("__")[:-1]  # a changed recipe: same slug, new hash
    e = expand(make(axes=[{"towers": [["a"]], "seed": [0]}], data_settings={"train_scenes": 7}))[0][0].id
    assert e != a[0]


def test_blocks_are_concatenated_and_duplicates_removed():
    runs, _ = expand(
        make(
            axes=[
                {"towers": [["a"], ["a", "b"]], "connector": ["sva"]},
                {"towers": [["a", "b"], ["a"]], "connector": ["sva", "concat"]},
            ]
        )
    )
    assert [(r.axes["towers"], r.axes["connector"]) for r in runs] == [
        (["a"], "sva"),
        (["a", "b"], "sva"),
        (["a", "b"], "concat"),
        (["a"], "concat"),
    ]


def test_combinations_that_cannot_run_are_skipped_with_their_reason():
    runs, skipped = expand(make(axes=[{"towers": [["nopreset"], ["ocr"], ["a"]], "frozen": [True, False]}]))
    assert [(r.axes["towers"], r.axes["frozen"]) for r in runs] == [(["ocr"], True), (["a"], True), (["a"], False)]
    reasons = {(tuple(s.axes["towers"]), s.axes["frozen"]): s.reason for s in skipped}
    assert "no preset for nopreset" in reasons[("nopreset",), True]
    assert "cannot be unfrozen" in reasons[("ocr",), False]


def test_frozen_false_trains_the_towers_in_the_llm_stage_without_cached_features():
    (run,) = expand(make(axes=[{"towers": [["a"]], "frozen": [False]}]))[0]
    ground, stage2 = dict(run.stages[0][1]), dict(run.stages[1][1])
    assert stage2["unfreeze_vision"] is True and stage2["feature_cache"] is None
    assert stage2["trainable"] == ["llm.", "encoders."]
    assert "unfreeze_vision" not in ground
    assert run.model["encoders"] == [{"preset": "tiny-clip", "frozen": False}]
    assert "__unfrozen__" in run.id


def test_adapter_data_zero_skips_the_warm_up_and_trains_the_connector_later(tmp_path):
    from cambrian.study.runner import stage_recipes

    spec = make(axes=[{"towers": [["a"]], "adapter_data": [0, 0.5, 3]}])
    r0, r_half, r3 = expand(spec)[0]
    assert r0.skipped_stages == ["ground"] and [n for n, _ in r0.stages] == ["stage2"]
    assert r0.stages[0][1]["trainable"] == ["connector.", "llm."]
    (tmp_path / "ground.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(10)))
    recipes = dict(stage_recipes(spec, r_half, tmp_path / "out", str(tmp_path)))
    assert recipes["ground"]["mixing_total"] == 5 and recipes["ground"]["mixing_ratios"] == {"general": 1.0}
    assert recipes["stage2"]["model"] == recipes["ground"]["output_dir"]
    assert recipes["ground"]["model"].endswith("model.json")
    assert recipes["ground"]["data"] == [{"path": f"{tmp_path}/ground.jsonl"}]
    assert dict(stage_recipes(spec, r3, tmp_path / "out", str(tmp_path)))["ground"]["mixing_total"] == 3


def test_mistakes_are_one_line_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown tower 'c'"):
        make(axes=[{"towers": [["c"]]}])
    with pytest.raises(ConfigError, match="control"):
        make(control="zz")
    with pytest.raises(ConfigError, match=r"axes\[0\].*seed"):
        make(axes=[{"towers": [["a"]], "seed": [-1]}])
    with pytest.raises(ConfigError, match="stages"):
        make(stages=[])
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(spec_dict(quick={"stages": {"nostage": {"lr": 1.0}}})))
    with pytest.raises(ConfigError, match="no stage named 'nostage'"):
        load_study(str(f), quick=True)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_study("no-such-study")


def test_quick_overrides_and_set_apply_to_a_study_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        yaml.safe_dump(spec_dict(quick={"stages": {"stage2": {"max_steps": 3}}, "axes": [{"towers": [["r"], ["a"]]}]}))
    )
    spec = load_study(str(f), ["eval.batch_size=4"], quick=True)
    assert spec.stages[1].recipe["max_steps"] == 3 and spec.stages[1].recipe["lr"] == 1e-4
    assert [r.axes["towers"] for r in expand(spec)[0]] == [["r"], ["a"]]
    assert spec.eval.batch_size == 4


def test_shipped_studies_expand():
    nano = load_study("nano-encoders")
    runs, skipped = expand(nano)
    towers = [r.axes["towers"] for r in runs]
    assert len(runs) >= 6 and [nano.control] in towers and any(len(t) > 1 for t in towers)
    assert not skipped
    quick = expand(load_study("nano-encoders", quick=True))[0]
    assert [r.axes["towers"] for r in quick] == [["random"], ["effnet"]]
    paper = load_study("paper-encoders")
    runs, skipped = expand(paper)
    assert runs and skipped  # encoders without a preset here are listed, not dropped silently
    assert all("no preset" in s.reason for s in skipped)
    assert len({t for r in runs for t in r.axes["towers"]} | {t for s in skipped for t in s.axes["towers"]}) == 23


# ---- category averaging and intervals -------------------------------------------------------------------------
def _metrics(d: Path, bench: str, metrics: dict) -> None:
    (d / bench).mkdir(parents=True, exist_ok=True)
    (d / bench / "metrics.json").write_text(json.dumps({"benchmark": bench, "metrics": metrics}))


def test_category_averages_as_the_paper_mme_over_20(tmp_path):
    from cambrian.study.report import _cells

    benches = ["mme", "mmbench", "seed", "gqa", "mmvp", "realworldqa", "cvbench"]
    groups = results.table("paper", benches)
    assert [g for g, _ in groups] == ["General", "Knowledge", "OCR & Chart", "Vision-Centric"]
    _metrics(tmp_path, "mme", {"perception": 1500.0})
    _metrics(tmp_path, "mmbench", {"circular_accuracy": 0.60})
    _metrics(tmp_path, "seed", {"accuracy": 0.70})
    _metrics(tmp_path, "gqa", {"accuracy": 0.55})
    _metrics(tmp_path, "mmvp", {"accuracy": 0.30})
    _metrics(tmp_path, "realworldqa", {"accuracy": 0.50})
    _metrics(tmp_path, "cvbench", {"accuracy_2d": 0.62, "accuracy_3d": 0.58, "overall": 0.60})
    bc = results.BenchCache({b: {} for b in benches}, str(tmp_path))
    bc.samples = lambda name: pytest.fail("no per-question data needed without predictions")
    cells = _cells(results.evaluate_columns(tmp_path, bc, groups), groups)
    assert cells["MME-P"]["value"] == pytest.approx(75.0)  # 1500 / 20 in the averages
    assert cells["General"]["value"] == pytest.approx((75 + 60 + 70 + 55) / 4)
    assert cells["Vision-Centric"]["value"] == pytest.approx((30 + 50 + 62 + 58) / 4)
    assert "Knowledge" not in cells  # no benchmark of that group in the study
    assert cells["Average"]["value"] == pytest.approx((75 + 60 + 70 + 55 + 30 + 50 + 62 + 58) / 8)
    assert cells["General"]["strata"] is None  # MME's sums have no per-question form: no interval


def test_nano_table_puts_the_synthetic_sets_in_three_categories():
    groups = dict(results.table("nano", ["easyvqa", "synth-text", "synth-chart", "cvbench-synth", "synth-attribute"]))
    assert [c.label for c in groups["General"]] == ["easy-VQA"]
    assert groups["Knowledge"] == []
    assert [c.label for c in groups["OCR & Chart"]] == ["synth-text", "synth-chart"]
    assert [c.key for c in groups["Vision-Centric"]] == ["accuracy_2d", "accuracy_3d", None]
    other = dict(results.table("nano", ["easyvqa", "pope"]))["Other"]
    assert [c.bench for c in other] == ["pope"]


def _cv_samples():
    from cambrian.eval.api import EvalSample

    rows = [("2D", "ADE20K")] * 4 + [("2D", "COCO")] * 2 + [("3D", "Omni3D")] * 3
    return [
        EvalSample(
            idx=i, prompt="", answer="(A)", meta={"type": t, "task": "Count", "source": s, "choices": ["1", "2"]}
        )
        for i, (t, s) in enumerate(rows)
    ]


def test_cvbench_columns_follow_the_official_formula_and_its_interval():
    from cambrian.cvbench.benchmark import CVBench
    from cambrian.cvbench.score import score_items

    samples = _cv_samples()
    preds = {0: "A", 1: "B", 2: "A", 3: "A", 4: "A", 5: "B", 6: "A", 7: "B", 8: "B"}
    bench = CVBench()
    q = bench.question_scores(samples, preds)
    assert q == [1, 0, 1, 1, 1, 0, 1, 0, 0]
    official = score_items([{"idx": s.idx, "answer": s.answer, **s.meta} for s in samples], preds)
    # hand: ADE 3/4, COCO 1/2 -> 2D 0.625; Omni 1/3 -> 3D 0.333; overall 0.479
    assert official["accuracy_2d"] == pytest.approx(0.625) and official["overall"] == pytest.approx((0.625 + 1 / 3) / 2)
    for key in ("accuracy_2d", "accuracy_3d", "overall"):
        col = results.Column(key, "cvbench", key, "Vision-Centric")
        s = results.column_strata(col, bench, samples, q)
        assert s.point() == pytest.approx(100 * official[key])
        iv = results.interval(s)
        ref = bootstrap_stratified(s.values, s.combine, seed=results.SEED)
        assert (iv.value, iv.low, iv.high) == (ref.value, ref.low, ref.high)
        assert iv.low <= iv.value <= iv.high
    assert bench.question_chance(samples[0]) == 0.5


def test_a_one_stratum_column_is_the_plain_mean_bootstrap_and_its_pairing():
    from cambrian.eval.benchmarks.synth_text import SynthText

    col = results.Column("synth-text", "synth-text", None, "OCR & Chart")
    a = results.column_strata(col, SynthText(), [None] * 6, [1, 1, 0, 1, 0, 1])
    b = results.column_strata(col, SynthText(), [None] * 6, [0, 1, 0, 0, 0, 1])
    iv = results.interval(a)
    ref = bootstrap_mean([100, 100, 0, 100, 0, 100], seed=results.SEED)
    assert (iv.value, iv.low, iv.high) == (ref.value, ref.low, ref.high)
    d = results.paired(a, b)
    ref = bootstrap_paired_diff([100, 100, 0, 100, 0, 100], [0, 100, 0, 0, 0, 100], seed=results.SEED)
    assert (d.value, d.low, d.high) == (ref.value, ref.low, ref.high) and d.value == pytest.approx(200 / 6)


def test_category_interval_and_paired_difference_of_a_formula():
    from cambrian.cvbench.benchmark import CVBench
    from cambrian.eval.benchmarks.synth_text import SynthText

    cv, samples = CVBench(), _cv_samples()
    c2 = results.Column("2D", "cvbench", "accuracy_2d", "V")
    c3 = results.Column("3D", "cvbench", "accuracy_3d", "V")
    ct = results.Column("text", "synth-text", None, "V")
    qa = [1, 0, 1, 1, 1, 0, 1, 0, 0]
    qb = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    cat_a = results.category_strata(
        [
            results.column_strata(c2, cv, samples, qa),
            results.column_strata(c3, cv, samples, qa),
            results.column_strata(ct, SynthText(), [None] * 2, [1, 0]),
        ]
    )
    cat_b = results.category_strata(
        [
            results.column_strata(c2, cv, samples, qb),
            results.column_strata(c3, cv, samples, qb),
            results.column_strata(ct, SynthText(), [None] * 2, [0, 0]),
        ]
    )
    # hand: a = mean(62.5, 33.3, 50) = 48.61; b: ADE 1.0, COCO 0 -> 2D 50; 3D 0; text 0 -> 16.67
    assert cat_a.point() == pytest.approx((62.5 + 100 / 3 + 50) / 3)
    assert cat_b.point() == pytest.approx(50 / 3)
    d = results.paired(cat_a, cat_b)
    assert d.value == pytest.approx(cat_a.point() - cat_b.point())
    assert d.low <= d.value <= d.high
    same = results.paired(cat_a, cat_a)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)


# ---- chance ------------------------------------------------------------------------------------------------
def test_column_chance_uses_the_column_formula():
    from cambrian.cvbench.benchmark import CVBench

    col = results.Column("overall", "cvbench", "overall", "V")
    s = results.column_strata(col, CVBench(), _cv_samples(), [0.5] * 9)
    assert s.point() == pytest.approx(50.0)
    assert not math.isnan(s.point())


def test_every_gpu_run_builds_its_connector_and_recipes(tmp_path):
    """The untested GPU study at least holds together: each run's model config loads, its connector accepts its
    towers' grids (built on the meta device), and its stage recipes are valid TrainConfigs."""
    import torch

    from cambrian.models.connectors.base import build_connector
    from cambrian.presets.models import config_from_mapping
    from cambrian.study.runner import stage_recipes
    from cambrian.train.config import TrainConfig

    spec = load_study("paper-encoders", [f"data_root={tmp_path}"])
    (tmp_path / "adapter.jsonl").write_text('{"id": 0}\n' * 20)
    runs, _ = expand(spec)
    assert len(runs) == 34
    for run in runs:
        cfg = config_from_mapping(run.model, where=run.id)
        with torch.device("meta"):
            build_connector(
                cfg.connector, [e.hidden_size for e in cfg.encoders], [e.out_grid for e in cfg.encoders], 4096
            )
        for name, r in stage_recipes(spec, run, tmp_path / "out", str(tmp_path)):
            TrainConfig.from_dict(r, f"{run.id}: {name}")
