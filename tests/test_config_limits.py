"""Configs that bite (issue 25, items 5 and 8): layer-count bombs are refused before anything is built, the memory
guard sizes the LLM from its config without building its layers, config files are bounded regular files (a FIFO
does not hang, a 2 GB file is not read) and YAML alias bombs are refused."""

from __future__ import annotations

import copy
import os
import threading

import pytest
import torch
from peak_memory import PeakRSS

from cambrian.config import MAX_LAYERS, CambrianConfig, LLMConfig
from cambrian.models.llm.loader import tiny_llm_config
from cambrian.presets.models import resolve_model_config
from cambrian.typed import MAX_YAML_NODES, ConfigError, parse_value, read_mapping

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)  # 10^9 values through 90 aliases, 400 bytes


def _with_llm_layers(n: int) -> dict:
    d = resolve_model_config("cambrian-8b").to_dict()
    d["llm"]["hf_config"]["num_hidden_layers"] = n
    return d


@pytest.mark.parametrize("n", [20_000, 10**7])
def test_layer_count_bombs_are_refused_before_building(n):
    with PeakRSS() as peak, pytest.raises(ConfigError, match=rf"num_hidden_layers must be .* to {MAX_LAYERS}, got {n}"):
        CambrianConfig.from_dict(_with_llm_layers(n), "config.json")
    assert peak.delta < 16 << 20


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda d: d["connector"].update(num_llm_layers=10**7), "num_llm_layers must be a whole number"),
        (lambda d: d["connector"].update(depth=10**7), "connector.depth must be a whole number >= 0 and <= 64"),
        (lambda d: d["connector"].update(query_num_list=[1] * 1000), "query_num_list"),
        (lambda d: d["connector"].update(num_llm_layers=12), r"after LLM layers 0, 3, \.\.\. 33 .* 32 layers"),
        (
            lambda d: d["encoders"][1]["hf_config"].update(vision_config={"num_hidden_layers": 10**6}),
            r"encoders\[1\]\.hf_config: vision_config\.num_hidden_layers must be",
        ),
        (lambda d: d["encoders"][3]["hf_config"].update(depths=[3, 3, 10**6, 3]), "depths must be"),
        (lambda d: d["llm"]["hf_config"].update(num_local_experts=10**8), "num_local_experts must be"),
    ],
)
def test_other_counts_are_bounded_and_named(change, needle):
    d = resolve_model_config("cambrian-8b").to_dict()
    change(d)
    with pytest.raises(ConfigError, match=needle):
        CambrianConfig.from_dict(d, "config.json")


def test_info_and_the_memory_guard_refuse_a_deep_checkpoint_config_in_one_line(tmp_path, capsys):
    import json

    from cambrian.cli.main import main

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(_with_llm_layers(10**7)))
    with PeakRSS() as peak:
        assert main(["info", str(ckpt)]) == 2
        assert main(["chat", "--model", str(ckpt), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error: ") and "num_hidden_layers" in e for e in err), err
    assert str(ckpt / "config.json") in err[0]
    assert peak.delta < 64 << 20


@pytest.mark.parametrize(
    "hf",
    [
        tiny_llm_config(num_layers=7),
        tiny_llm_config(num_layers=5, tie_word_embeddings=True),
        {**tiny_llm_config(num_layers=3), "model_type": "qwen2"},
        {**tiny_llm_config(num_layers=6), "model_type": "phi3"},
        {**tiny_llm_config(num_layers=2)},  # two layers: built as is
    ],
)
def test_the_guard_sizes_the_llm_from_one_and_two_layers(hf, monkeypatch):
    """The estimate equals the parameter bytes of the whole model built on the meta device, while only one- and
    two-layer copies are built."""
    from cambrian.models import builder
    from cambrian.models.llm import loader

    cfg = LLMConfig(backend="random", tokenizer="tiny", hf_config=hf, template="chatml")
    with torch.device("meta"):
        full = builder._unique_param_bytes(loader.build_from_config(hf))
    built = []
    real = loader.build_from_config
    monkeypatch.setattr(loader, "build_from_config", lambda d, *a, **k: built.append(d["num_hidden_layers"]) or real(d))
    with torch.device("meta"):
        est, hidden = builder._llm_parameter_bytes(copy.deepcopy(cfg))
    assert est == full and hidden == 64
    assert max(built) <= 2


def test_the_guard_of_the_8b_preset_agrees_with_the_meta_build():
    from cambrian.models.builder import _unique_param_bytes, estimate_parameter_bytes
    from cambrian.models.llm.loader import build_architecture

    cfg = resolve_model_config("cambrian-8b")
    with torch.device("meta"):
        llm = _unique_param_bytes(build_architecture(cfg.llm))
    assert llm == 32_121_044_992  # 8,030,261,248 fp32 parameters: the released Llama-3-8B
    assert estimate_parameter_bytes(cfg) > llm


# ---- config files ---------------------------------------------------------------------------------------------
def test_a_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path, capsys):
    from cambrian.cli.main import main

    path = tmp_path / "recipe.yaml"
    path.write_text(BOMB)
    assert path.stat().st_size < 500
    with PeakRSS() as peak:
        with pytest.raises(ConfigError, match=rf"recipe.yaml: the YAML document expands to more than {MAX_YAML_NODES}"):
            read_mapping(path)
        assert main(["data", "curate", str(path), "--out", str(tmp_path / "out")]) == 2
        assert main(["train", str(path)]) == 2
        assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("expands to more than" in e for e in err), err
    assert peak.delta < 64 << 20
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_value(BOMB.replace("\n", ", ").join("{}"), "override")
    assert read_mapping(_write(tmp_path / "ok.yaml", "base: &b {lr: 1}\nstage1: *b\nstage2: *b\n"))["stage2"] == {
        "lr": 1
    }


def _write(path, text):
    path.write_text(text)
    return path


def test_a_recursive_yaml_alias_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="recursive"):
        read_mapping(_write(tmp_path / "r.yaml", "a: &a [1, *a]\n"))


def _returns_within(fn, path, seconds=30.0):
    """Run ``fn()`` in a thread; if it blocks (on opening the FIFO at ``path``), unblock it and fail."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a writer appears: the blocked reader gets EOF
        os.close(fd)
        t.join(10)
        pytest.fail(f"{fn} blocked on the FIFO {path}")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_config_files_are_bounded_regular_files(tmp_path, capsys):
    from cambrian.cli.main import main

    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "config.json")
    assert _returns_within(lambda: main(["info", str(fifo_dir)]), fifo_dir / "config.json") == 2
    out = tmp_path / "out"
    assert (
        _returns_within(
            lambda: main(["convert", str(fifo_dir), str(out), "--to", "official"]), fifo_dir / "config.json"
        )
        == 2
    )
    os.mkfifo(tmp_path / "model.yaml")
    assert _returns_within(lambda: main(["info", str(tmp_path / "model.yaml")]), tmp_path / "model.yaml") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") and "not a regular file" in e for e in err), err
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(32 << 20)  # sparse: 32 MB of zeros that take no disk
    with pytest.raises(ConfigError, match="too large for a config file"):
        read_mapping(big)
