"""The key audit of released configs (cambrian/models/official/llm_keys.py, docs/release-keys.md): every family's
real (8B) or reconstructed (13B, 34B, Phi-3) config.json, every key accounted for, every key that changes the
computation reaching the built transformers config, both directions; refusals are one error line."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from cambrian.models.llm.loader import build_from_config, config_from_dict, tiny_llm_config
from cambrian.models.official import ReleaseFormatError, config_to_official, official_to_config
from cambrian.models.official.config import CAMBRIAN_KEYS, llm_hf_config
from cambrian.models.official.llm_keys import COMPUTE_KEYS, audit, audit_markdown, official_llm_keys

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "official_configs"
FAMILIES = {  # name -> (template, RoPE base, family)
    "cambrian-8b": ("llama_3", 500000.0, "llama"),
    "cambrian-13b": ("vicuna_v1", 10000.0, "llama"),
    "cambrian-34b": ("chatml", 5000000.0, "llama"),
    "cambrian-phi3-3b": ("phi3", 10000.0, "phi3"),
}


def family_config(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_the_docs_table_is_current():
    configs = {name: family_config(name) for name in FAMILIES}
    text = (ROOT / "docs" / "release-keys.md").read_text(encoding="utf-8")
    assert text == audit_markdown(configs, CAMBRIAN_KEYS), "run scripts/official_parity/key_audit.py"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_key_of_every_family_is_accounted_for(name):
    cfg = family_config(name)
    rows = {r.key: r for r in audit(cfg, CAMBRIAN_KEYS)}
    assert set(cfg) <= set(rows)
    assert not [k for k, r in rows.items() if r.fate == "unknown"]
    family = FAMILIES[name][2]
    for key in COMPUTE_KEYS[family]:  # present in the file: carried (kept, or renamed into rope_parameters)
        assert rows[key].fate in ("compute", "renamed"), (key, rows[key])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_built_llm_computes_with_the_release_settings(name):
    template, theta, family = FAMILIES[name]
    cfg = family_config(name)
    ours = official_to_config(cfg, source=f"nyu-visionx/{name}")
    assert ours.llm.template == template
    built = config_from_dict(ours.llm.hf_config)
    assert built.model_type == family
    assert built.rope_parameters["rope_theta"] == theta
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "vocab_size"):
        assert getattr(built, key) == cfg[key], key
    if family == "phi3":
        assert built.sliding_window == cfg["sliding_window"] + 1  # the official mask sees w + 1 keys


def test_the_rope_base_reaches_the_rotary_embedding():
    """The bug this audit fixes: transformers 5 dropped rope_theta when the release was filtered by LlamaConfig's
    keys. The built model's inverse frequencies are base^(-2i/d), computed here by hand for base 500000."""
    cfg = family_config("cambrian-8b")
    hf = llm_hf_config(cfg)
    small = dict(hf, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=32, head_dim=16)  # fmt: skip
    model = build_from_config(small)
    inv = model.model.rotary_emb.inv_freq
    assert torch.allclose(inv, torch.tensor([500000.0 ** (-2 * i / 16) for i in range(8)]), rtol=1e-6)
    assert not math.isclose(float(inv[1]), 10000.0 ** (-2 / 16))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_exporting_writes_the_official_llm_keys_back(name):
    cfg = family_config(name)
    ours = official_to_config(cfg, source=f"x/{name}")
    back = config_to_official(ours)
    for key in COMPUTE_KEYS[FAMILIES[name][2]]:
        if key in cfg:
            assert back[key] == cfg[key], key
    assert "rope_parameters" not in back  # a key the official code never reads


def test_a_model_trained_here_exports_its_rope_settings_in_official_terms():
    hf = tiny_llm_config(num_layers=1, rope_parameters={"rope_theta": 300000.0, "rope_type": "linear", "factor": 2.0})
    keys = official_llm_keys(hf)
    assert keys["rope_theta"] == 300000.0
    assert keys["rope_scaling"] == {"type": "linear", "factor": 2.0}
    # and reading them back gives the same rotary settings
    back = dict(keys, model_type="cambrian_llama", mm_vision_tower_aux_list=["x"])
    assert config_from_dict(llm_hf_config(back)).rope_parameters == {
        "rope_theta": 300000.0,
        "rope_type": "linear",
        "factor": 2.0,
    }


def test_settings_the_official_code_cannot_express_are_refused_on_export():
    llama3 = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 2048}  # fmt: skip
    with pytest.raises(ReleaseFormatError, match="RoPE scaling 'llama3' cannot be written"):
        official_llm_keys(tiny_llm_config(num_layers=1, rope_parameters=llama3))
    with pytest.raises(ReleaseFormatError, match="mlp_bias"):
        official_llm_keys(tiny_llm_config(num_layers=1, mlp_bias=True))
    with pytest.raises(ReleaseFormatError, match="head_dim 32"):
        official_llm_keys(tiny_llm_config(num_layers=1, head_dim=32))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_scaling": {"type": "llama3", "factor": 8.0}}, "rope_scaling type 'llama3' is not one the official"),
        ({"rope_scaling": "linear"}, "rope_scaling must be an object or null"),
        ({"mlp_bias": True}, "mlp_bias True: the official LLaMA MLP"),
        ({"head_dim": 64}, "head_dim 64: the official code derives it"),
        ({"mm_use_im_start_end": True}, "mm_use_im_start_end True is not supported"),
        ({"image_aspect_ratio": "anyres"}, "image_aspect_ratio 'anyres' is not supported"),
        ({"model_type": "cambrian_mistral"}, "model_type 'cambrian_mistral' is not a released Cambrian family"),
    ],
)
def test_configs_that_would_compute_differently_are_refused_with_one_line(change, message):
    cfg = dict(family_config("cambrian-8b"), **change)
    with pytest.raises(ReleaseFormatError, match=message) as e:
        official_to_config(cfg, where="cambrian-8b/config.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("cambrian-8b/config.json: ")


def test_absent_keys_take_the_official_codes_defaults_not_the_installed_ones():
    cfg = family_config("cambrian-8b")
    for key in ("rope_theta", "rms_norm_eps", "max_position_embeddings", "num_key_value_heads"):
        cfg.pop(key)
    built = config_from_dict(llm_hf_config(cfg))
    assert built.rope_parameters["rope_theta"] == 10000.0  # LlamaConfig 4.40's defaults
    assert built.rms_norm_eps == 1e-6 and built.max_position_embeddings == 2048
    assert built.num_key_value_heads == built.num_attention_heads
    rows = {r.key: r for r in audit(cfg, CAMBRIAN_KEYS)}
    assert rows["rms_norm_eps"].fate == "defaulted" and rows["rms_norm_eps"].official == "(absent)"


def test_an_unknown_key_is_carried_and_reported():
    cfg = dict(family_config("cambrian-8b"), my_new_setting=3)
    assert llm_hf_config(cfg)["my_new_setting"] == 3
    (row,) = [r for r in audit(cfg, CAMBRIAN_KEYS) if r.key == "my_new_setting"]
    assert row.fate == "unknown" and "carried" in row.note


def test_official_llm_keys_round_trip_for_phi3_windows():
    cfg = family_config("cambrian-phi3-3b")
    ours = official_to_config(copy.deepcopy(cfg), source="x/phi3")
    assert ours.llm.hf_config["sliding_window"] == 2048
    assert official_llm_keys(ours.llm.hf_config)["sliding_window"] == 2047
