"""No code from a model directory ever runs (issue 25, item 4): a tower or LLM directory whose config carries an
``auto_map`` (transformers' hook for repository code) neither prompts "run custom code? [y/N]" nor runs its Python,
through the library, ``chat`` and ``train`` with a model YAML. A directory of a known architecture loads with the
class transformers ships; one that only its own code can build is one clear error."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import transformers

from cambrian.config import EncoderConfig, LLMConfig
from cambrian.models.encoders import build_encoder
from cambrian.models.llm.loader import load_llm, tiny_llm_config, tiny_tokenizer

MARKER = "RAN_REPOSITORY_CODE"


def plant_code(d: Path, model_type: str | None = None, classes=("AutoConfig", "AutoModel")) -> None:
    """Add ``custom.py`` (which writes a marker file when imported) and an ``auto_map`` pointing at it."""
    (d / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path(__file__).with_name({MARKER!r}).write_text('ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'custom_tower'\n"
        "class CustomModel(PreTrainedModel):\n    config_class = CustomConfig\n"
    )
    cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {"hidden_size": 8}
    if model_type is not None:
        cfg["model_type"] = model_type
    cfg["auto_map"] = {c: f"custom.Custom{'Config' if c == 'AutoConfig' else 'Model'}" for c in classes}
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.fixture
def say_yes(monkeypatch):
    """Answer "y" to any prompt, as the user in the report did; record that one was asked."""
    asked = []

    def answer(prompt=""):
        asked.append(prompt)
        return "y"

    monkeypatch.setattr(builtins, "input", answer)
    return asked


def _dinov2_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tower"
    cfg = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    transformers.Dinov2Model(cfg).save_pretrained(d)
    return d


def _tower(d: Path, backend: str = "hf") -> EncoderConfig:
    return EncoderConfig(
        id="planted", backend=backend, name_or_path=str(d), image_size=32, hidden_size=32, native_grid=4
    )


@pytest.mark.parametrize("backend", ["hf", "hf_auto", "hf_dinov2"])
def test_a_known_tower_with_an_auto_map_loads_without_its_code(tmp_path, say_yes, backend):
    d = _dinov2_dir(tmp_path)
    plant_code(d)
    enc = build_encoder(_tower(d, backend))
    assert type(enc.model).__name__ == "Dinov2Model"
    assert "auto_map" not in enc.config.hf_config  # a checkpoint of it rebuilds without the hook
    assert not (d / MARKER).exists() and say_yes == []


def test_a_tower_only_its_own_code_can_build_is_one_clear_error(tmp_path, say_yes):
    d = tmp_path / "custom"
    d.mkdir()
    plant_code(d, model_type="custom_tower")
    with pytest.raises(ValueError, match=r"needs its own Python code.*never runs code from a model directory"):
        build_encoder(_tower(d))
    assert not (d / MARKER).exists() and say_yes == []


def test_a_rebuilt_config_with_an_auto_map_runs_no_code(tmp_path, say_yes):
    """``hf_config`` in a handed-over checkpoint may carry an ``auto_map`` too."""
    d = _dinov2_dir(tmp_path)
    plant_code(d)
    hf = json.loads((d / "config.json").read_text())
    enc = build_encoder(EncoderConfig(**{**_tower(d, "hf_auto").__dict__, "name_or_path": None, "hf_config": hf}))
    assert type(enc.model).__name__ == "Dinov2Model" and not (d / MARKER).exists() and say_yes == []


def test_an_llm_directory_with_an_auto_map_loads_without_its_code(tmp_path, say_yes):
    d = tmp_path / "llm"
    tok = tiny_tokenizer()
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**tiny_llm_config(len(tok)))).save_pretrained(d)
    tok.save_pretrained(d)
    plant_code(d, classes=("AutoConfig", "AutoModelForCausalLM"))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["custom.CustomTokenizer", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    llm, tokenizer = load_llm(LLMConfig(backend="hf", name_or_path=str(d), template="chatml"))
    assert type(llm).__name__ == "LlamaForCausalLM" and tokenizer is not None
    assert not (d / MARKER).exists() and say_yes == []


def _model_yaml(tmp_path: Path, tower: Path) -> Path:
    y = tmp_path / "model.yaml"
    y.write_text(
        "name: planted\n"
        f"encoders:\n  - {{preset: tiny-dinov2, backend: hf, name_or_path: {tower}}}\n"
        "connector: {type: mlp2x_gelu, image_token_len: 16, hidden_size: 32}\n"
        "llm: {backend: random, tokenizer: tiny, template: chatml, max_length: 256}\n"
    )
    return y


def test_chat_and_train_with_such_a_tower_are_one_error_line(tmp_path, say_yes, capsys):
    from cambrian.cli.main import main

    d = tmp_path / "custom"
    d.mkdir()
    plant_code(d, model_type="custom_tower")
    y = _model_yaml(tmp_path, d)
    assert main(["chat", "--model", str(y), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "never runs code" in err[0]
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {y}\nstage: 1\ndata: [{{path: {data}}}]\noutput_dir: {tmp_path / 'run'}\nreport_to: []\n"
    )
    rc = main(["train", str(recipe)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "never runs code" in err[-1]
    assert not (d / MARKER).exists() and say_yes == []
