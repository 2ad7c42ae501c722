"""The one typed config loader (cambrian.typed): field types and ranges, unknown keys with a did-you-mean, YAML
reading, key=value overrides, and every config class of the package going through it."""

from __future__ import annotations

import dataclasses
from dataclasses import field

import pytest
from helpers import one_error_line

from cambrian.cli.main import main
from cambrian.typed import (
    Bool,
    Choice,
    ConfigError,
    Int,
    Mapping,
    Num,
    OptInt,
    OptNum,
    OptStr,
    OptStrList,
    Str,
    StrList,
    StrTuple,
    apply_overrides,
    build,
    check_value,
    did_you_mean,
    parse_value,
    read_mapping,
    typed_config,
)


# ---- the loader itself ------------------------------------------------------------------------------------------
@typed_config
class Inner:
    rank: Int(ge=1) = 4
    name: OptStr = None


@typed_config
class Outer:
    size: Int(ge=1, lt=10)
    ratio: Num(gt=0, le=1) = 0.5
    limit: OptInt(ge=0, none_means="no limit") = None
    scale: OptNum(ge=0) = None
    on: Bool = False
    tag: Str = "x"
    tags: StrList = field(default_factory=list)
    maybe_tags: OptStrList = None
    stops: StrTuple = ()
    mode: Choice("fast", "slow") = "fast"
    extra: Mapping = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


@typed_config(label="thing", frozen=True)
class Labelled:
    n: Int(ge=0) = 0


@pytest.mark.parametrize(
    "data, message",
    [
        ({"size": "4"}, "size must be a whole number, got '4'"),
        ({"size": 10}, "size must be a whole number >= 1 and < 10, got 10"),
        ({"size": True}, "size must be a whole number, got True"),
        ({"size": 2, "ratio": 0}, "ratio must be > 0 and <= 1, got 0.0"),
        ({"size": 2, "ratio": float("nan")}, "ratio must be > 0 and <= 1, got nan"),
        ({"size": 2, "ratio": "half"}, "ratio must be a number, got 'half'"),
        ({"size": 2, "limit": -1}, "limit must be a whole number >= 0 or null (no limit), got -1"),
        ({"size": 2, "scale": -1}, "scale must be >= 0, got -1.0"),
        ({"size": 2, "on": "yes"}, "on must be true or false, got 'yes'"),
        ({"size": 2, "tag": " "}, "tag must be a non-empty string, got ' '"),
        ({"size": 2, "tags": [1]}, "tags must be a list of strings, got [1]"),
        ({"size": 2, "stops": ["a", ""]}, "stops must be non-empty strings, got ['a', '']"),
        ({"size": 2, "mode": "fsat"}, "mode must be one of 'fast', 'slow', got 'fsat' (did you mean 'fast'?)"),
        ({"size": 2, "extra": [1]}, "extra must be a mapping, got [1]"),
        ({"size": 2, "inner": {"rank": 0}}, "inner.rank must be a whole number >= 1, got 0"),
        ({"size": 2, "inner": {"rnak": 2}}, "unknown inner keys ['rnak'] (inner.rnak) (did you mean 'rank'?)"),
        ({"size": 2, "sise": 3}, "unknown Outer keys ['sise'] (did you mean 'size'?)"),
        ({}, "Outer needs a 'size'"),
    ],
)
def test_field_types_name_the_field_in_one_line(data, message):
    with pytest.raises(ConfigError) as e:
        build(Outer, data, where="f.yaml")
    assert str(e.value) == f"f.yaml: {message}"


def test_values_are_normalised_and_code_construction_is_checked_too():
    o = build(Outer, {"size": 4.0, "ratio": "1e-1", "tags": "one", "stops": "###", "extra": None})
    assert (o.size, o.ratio, o.tags, o.stops, o.extra) == (4, 0.1, ["one"], ("###",), {})
    assert build(Outer, o) is o
    with pytest.raises(ConfigError, match="^size must be a whole number"):
        Outer(size=0)
    with pytest.raises(ConfigError, match="^thing: n must be a whole number >= 0, got -1$"):
        Labelled(n=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Labelled().n = 3
    with pytest.raises(ConfigError, match="expected a mapping of Outer fields, got list"):
        build(Outer, [1])
    with pytest.raises(ConfigError, match="keys must be strings, got 1"):
        build(Outer, {1: 2})


def test_check_value_and_did_you_mean():
    assert check_value(Int(ge=1), 3.0, "image_size") == 3
    with pytest.raises(ConfigError, match="^image_size must be a whole number >= 1, got 0$"):
        check_value(Int(ge=1), 0, "image_size")
    assert did_you_mean("lr_rate", ["lr", "seed"]) == " (did you mean 'lr'?)"  # a longer spelling
    assert did_you_mean("zzz", ["b", "a"]) == " (valid: a, b)"


def test_read_mapping_names_the_line_and_column(tmp_path):
    good = tmp_path / "r.yaml"
    good.write_text("lr: 1e-3\nname: x\n")
    assert read_mapping(good) == {"lr": "1e-3", "name": "x"}  # YAML 1.1 strings; Num fields read them as numbers
    (tmp_path / "empty.yaml").write_text("")
    assert read_mapping(tmp_path / "empty.yaml") == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line 3, column 1"):
        read_mapping(bad)
    js = tmp_path / "bad.json"
    js.write_text('{"a": 1,}')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON at line 1, column 9"):
        read_mapping(js)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping at top level, got list"):
        read_mapping(top)


def test_overrides_nest_parse_yaml_and_leave_the_input_alone():
    base = {"lr": 1.0, "lora": {"r": 4, "alpha": 8}}
    out = apply_overrides(base, ["lr=2.5e-5", "lora.r=16", "data=[{path: x}]", "name="])
    assert out == {"lr": 2.5e-5, "lora": {"r": 16, "alpha": 8}, "data": [{"path": "x"}], "name": None}
    assert apply_overrides({}, ["lr=2e-5"]) == {"lr": "2e-5"}  # YAML 1.1 reads it as text; Num fields parse it
    assert base == {"lr": 1.0, "lora": {"r": 4, "alpha": 8}}
    assert parse_value("true") is True and parse_value("[a, b]") == ["a", "b"] and parse_value("") is None
    with pytest.raises(ConfigError, match="override 'lr' is not key=value"):
        apply_overrides(base, ["lr"])
    with pytest.raises(ConfigError, match="empty key"):
        apply_overrides(base, ["lora..r=1"])
    with pytest.raises(ConfigError, match=r"override data: '\[\{path: x' is not a valid YAML value"):
        apply_overrides(base, ["data=[{path: x"])


# ---- through the commands: types and ranges named by field, nested typos with a did-you-mean, recipe-relative data


@pytest.mark.parametrize(
    "override, needle",
    [
        ("micro_batch_size=four", "micro_batch_size must be a whole number, got 'four'"),
        ("epochs=1.5", "epochs must be a whole number, got 1.5"),
        ("micro_batch_size=0", "micro_batch_size must be a whole number >= 1, got 0"),
        ("betas=[0.9]", "betas must be two numbers"),
        ("betas=[0.9, 1.5]", "betas[1] must be >= 0 and < 1"),
        ("lr=fast", "lr must be a number, got 'fast'"),
        ("lr=-1", "lr must be > 0"),
        ("warmup_ratio=2", "warmup_ratio must be >= 0 and <= 1, got 2.0"),
        ("max_bad_fraction=1.5", "max_bad_fraction must be >= 0 and <= 1"),
        ("progress=maybe", "progress must be true or false"),
        ("scheduler=cosin", "did you mean 'cosine'"),
        ("lora.rank=8", "unknown lora keys ['rank'] (lora.rank) (did you mean 'r'?)"),
        ("lora.r=0", "lora.r must be a whole number >= 1"),
        ("grounding.scal=2", "(did you mean 'scale'?)"),
        ("grounding.scale=big", "grounding.scale must be a number"),
        ("stage=3", "stage must be one of 1, 2, 'ground', got 3"),
        ("micro_batchsize=4", "unknown TrainConfig keys ['micro_batchsize'] (did you mean 'micro_batch_size'?)"),
        (
            "data=[{path: x.jsonl, image: imgs}]",
            "unknown data[0] keys ['image'] (data[0].image) (did you mean 'images'?)",
        ),
        ("data=[{images: imgs}]", "data[0] needs a 'path'"),
        ("report_to=[1]", "report_to must be a list of strings"),
    ],
)
def test_config_mistakes_name_the_field(tmp_path, capsys, override, needle):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: toy\nstage: 2\nlr: 1e-3\n")
    assert main(["train", str(recipe), override]) == 2
    line = one_error_line(capsys)
    assert needle in line and "recipe.yaml" in line, line


def test_config_numbers_from_yaml_and_recipe_relative_data(tmp_path, monkeypatch):
    from cambrian.train.config import ConfigError, TrainConfig

    sub = tmp_path / "recipes"
    sub.mkdir()
    (sub / "r.yaml").write_text(
        "lr: 1e-3\neps: 1e-6\nmax_steps: 4.0\n"
        "data:\n  - {path: d/x.jsonl, images: d/img}\n  - {path: /abs/y.jsonl}\n  - z.jsonl\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.load("recipes/r.yaml")
    assert cfg.lr == 1e-3 and cfg.eps == 1e-6 and cfg.max_steps == 4 and isinstance(cfg.max_steps, int)
    assert cfg.data == [
        {"path": "recipes/d/x.jsonl", "images": "recipes/d/img"},
        {"path": "/abs/y.jsonl"},
        {"path": "recipes/z.jsonl"},
    ]
    # data given on the command line stays relative to the current dir
    assert TrainConfig.load("recipes/r.yaml", ["data=[{path: mine.jsonl}]"]).data == [{"path": "mine.jsonl"}]
    # the constructor checks too (the demo and tests build configs in code)
    with pytest.raises(ConfigError, match="micro_batch_size must be a whole number >= 1"):
        TrainConfig(micro_batch_size=0)
    assert TrainConfig(lr="2e-5").lr == 2e-5


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--param", "count_maxx=5"], "--param: unknown BuildParams keys ['count_maxx'] (did you mean 'count_max'?)"),
        (["--param", "count_zero_prob=2"], "--param: count_zero_prob must be >= 0 and <= 1, got 2.0"),
        (
            ["--param", "max_per_image.Cout=1"],
            "unknown max_per_image keys ['Cout'] (max_per_image.Cout) (did you mean 'Count'?)",
        ),
        (["--param", "count_num_options=[4, five]"], "count_num_options[1] must be a whole number, got 'five'"),
        (["--param", "relation_boxes"], "--param 'relation_boxes' is not key=value"),
    ],
)
def test_cvbench_build_params_go_through_the_typed_loader(tmp_path, capsys, argv, needle):
    assert main(["cvbench", "build", "--scenes", str(tmp_path), "--out", str(tmp_path / "o"), *argv]) == 2
    line = one_error_line(capsys)
    assert needle in line, line
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize(
    "data, needle",
    [
        (
            {"encoders": [{"preset": "tiny-clip", "image_size": "big"}]},
            "encoder preset 'tiny-clip': image_size must be a whole number, got 'big'",
        ),
        ({"connector": {"depht": 2}}, "unknown connector keys ['depht'] (connector.depht) (did you mean 'depth'?)"),
        ({"llm": {"max_length": 0}}, "llm.max_length must be a whole number >= 1, got 0"),
        ({"dtype": "fp8"}, "dtype must be one of 'float32', 'bfloat16', 'float16', got 'fp8'"),
        (
            {"connector": {"query_num_list": [16, -1]}},
            "connector.query_num_list[1] must be a whole number >= 1, got -1",
        ),
    ],
)
def test_model_configs_go_through_the_typed_loader(tmp_path, capsys, data, needle):
    import yaml

    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump({"name": "m", "encoders": ["tiny-clip"], **data}))
    assert main(["info", str(cfg)]) == 2
    line = one_error_line(capsys)
    assert needle in line and "model.yaml" in line, line


@pytest.mark.parametrize(
    "option, needle",
    [
        ("textvqa.ocr_token=false", "benchmark 'textvqa': unknown option 'ocr_token' (did you mean 'ocr_tokens'?)"),
        ("textvqa.ocr_tokens=maybe", "benchmark 'textvqa': option ocr_tokens must be true or false, got 'maybe'"),
        ("easyvqa.max_images=0", "benchmark 'easyvqa': option max_images must be a whole number >= 1 or null, got 0"),
        ("pope.anything=1", "benchmark 'pope': unknown option 'anything' (it has no options)"),
        ("textvqa=1", "--option expects BENCH.KEY=VALUE"),
    ],
)
def test_benchmark_options_go_through_the_typed_loader(tmp_path, capsys, option, needle):
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"idx": 0, "prediction": "yes"}\n')
    bench = option.split(".")[0].split("=")[0]
    assert (
        main(
            ["eval", "score", "--bench", bench, "--data", str(tmp_path), "--predictions", str(pred), "--option", option]
        )
        == 2
    )
    line = one_error_line(capsys)
    assert needle in line, line


def test_an_override_that_is_not_yaml_is_an_error_not_a_string(tmp_path, capsys):
    """``data=[{path: x`` once became a data path named "[{path: x"; now it is one error line naming the override."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: toy\nstage: 2\n")
    assert main(["train", str(recipe), "data=[{path: x.jsonl"]) == 2
    line = one_error_line(capsys)
    assert "override data: '[{path: x.jsonl' is not a valid YAML value" in line, line


def test_a_recipe_without_a_model_is_a_config_error(tmp_path):
    from cambrian.train.config import ConfigError, TrainConfig
    from cambrian.train.trainer import Trainer

    cfg = TrainConfig(model=None, data=[{"path": str(tmp_path / "x.jsonl")}], output_dir=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="no model: set model:"):
        Trainer(cfg)
