"""LLM loader: tiny tokenizer, random / hf backends round trip, meta-device counting, pad token, gguf errors."""

import copy

import pytest
import torch

from cambrian.config import LLMConfig
from cambrian.models.llm.loader import (
    LLM_BACKENDS,
    build_from_config,
    ensure_pad_token,
    load_llm,
    resolve_gguf,
    tiny_llm_config,
    tiny_tokenizer,
)
from cambrian.registry import UnknownKeyError

LLAMA3_8B = dict(
    model_type="llama",
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    tie_word_embeddings=False,
    max_position_embeddings=8192,
)


def test_backends_registered():
    assert LLM_BACKENDS.names() == ["gguf", "hf", "random"]
    with pytest.raises(UnknownKeyError, match="valid llm backend ids: gguf, hf, random"):
        load_llm(LLMConfig(backend="llamacpp"))


def test_tiny_tokenizer_fresh_and_roundtrip(tmp_path):
    a, b = tiny_tokenizer(), tiny_tokenizer()
    assert a is not b  # cached vocabulary, fresh objects (callers may add tokens)
    a.add_tokens(["<extra>"])
    assert len(b) == 640 and len(a) == 641
    tok = tiny_tokenizer()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<|pad|>")
    text = "<|start_header_id|>user<|end_header_id|>How many red cubes?<|eot_id|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "userHow many red cubes?"
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    back = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert back(text, add_special_tokens=False)["input_ids"] == ids
    assert (back.bos_token_id, back.eos_token_id, back.pad_token_id) == (1, 2, 0)


def test_tiny_llm_config():
    d = tiny_llm_config(640)
    assert (d["hidden_size"], d["num_attention_heads"], d["num_key_value_heads"], d["vocab_size"]) == (64, 4, 2, 640)
    assert d["num_hidden_layers"] == 2 and tiny_llm_config(640, num_layers=4)["num_hidden_layers"] == 4
    assert d["model_type"] == "llama"


def test_random_backend_builds_and_leaves_the_config_alone():
    cfg = LLMConfig(backend="random", template="llama_3")
    before = copy.deepcopy(cfg)
    model, tok = load_llm(cfg)
    assert cfg == before  # load_llm never mutates the config it is given
    assert type(model).__name__ == "LlamaForCausalLM"
    arch = model.config.to_dict()
    assert model.get_input_embeddings().num_embeddings == len(tok) == 640
    assert arch["vocab_size"] == 640 and arch["hidden_size"] == 64
    assert tok.pad_token_id == 0 and model.config.pad_token_id == 0
    # rebuilding from the recorded architecture gives the same parameter shapes
    rebuilt, _ = load_llm(LLMConfig(backend="random", hf_config=copy.deepcopy(arch)))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_hf_backend_roundtrip_identical_logits(tmp_path):
    tok = tiny_tokenizer()
    model = build_from_config(tiny_llm_config(len(tok), num_layers=3)).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    cfg = LLMConfig(backend="hf", name_or_path=str(tmp_path))
    loaded, ltok = load_llm(cfg)
    loaded.eval()
    ids = torch.tensor([ltok("What is the capital of France?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = loaded(input_ids=ids).logits
    assert torch.equal(a, b)
    arch_dict = loaded.config.to_dict()
    assert arch_dict["num_hidden_layers"] == 3 and cfg.hf_config is None  # the given config is not mutated
    # bf16 request
    half, _ = load_llm(LLMConfig(backend="hf", name_or_path=str(tmp_path)), dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    # load_weights=False: architecture only (from the recorded hf_config), random weights
    arch, _ = load_llm(LLMConfig(backend="hf", name_or_path=str(tmp_path), hf_config=arch_dict), load_weights=False)
    assert sum(p.numel() for p in arch.parameters()) == sum(p.numel() for p in loaded.parameters())


def test_hf_backend_offline_hub_id_fails_fast():
    with pytest.raises(OSError):
        load_llm(LLMConfig(backend="hf", name_or_path="nonexistent-org/nonexistent-model-xyz"))


def test_meta_device_8b_parameter_count():
    # LLaMA-3-8B: 2 * 128256*4096 (embed + untied head) + 32 * (2*4096^2 + 2*4096*1024 + 3*4096*14336 + 2*4096)
    # + 4096 (final norm) = 1,050,673,152 + 32 * 218,112,000 + 4,096 = 8,030,261,248
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert per_layer == 218_112_000
    assert 2 * 128256 * 4096 + 32 * per_layer + 4096 == 8_030_261_248
    cfg = LLMConfig(backend="random", hf_config=dict(LLAMA3_8B))
    with torch.device("meta"):
        model, _ = load_llm(cfg, load_weights=False, dtype=torch.bfloat16)
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert sum(p.numel() for p in params) == 8_030_261_248
    # the hf backend with load_weights=False builds from hf_config without touching the hub
    with torch.device("meta"):
        m2, tok2 = load_llm(
            LLMConfig(backend="hf", name_or_path="meta-llama/Meta-Llama-3-8B-Instruct", hf_config=dict(LLAMA3_8B)),
            load_weights=False,
        )
    assert tok2 is None  # not available offline; architecture still built
    assert sum(p.numel() for p in m2.parameters()) == 8_030_261_248


def test_ensure_pad_token_prefers_existing_tokens():
    from transformers import PreTrainedTokenizerFast

    tok = tiny_tokenizer()
    backend = tok.backend_tokenizer
    # no pad, eos present -> eos, no new token
    t = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    assert t.pad_token is None
    n = len(t)
    ensure_pad_token(t)
    assert t.pad_token == "</s>" and len(t) == n
    # Llama-3 style vocab with <|reserved_special_token_0|> -> that token (official pad choice, id 128002 on Llama-3)
    t = PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(backend), eos_token="</s>")
    t.add_special_tokens({"additional_special_tokens": ["<|reserved_special_token_0|>"]})
    ensure_pad_token(t)
    assert t.pad_token == "<|reserved_special_token_0|>"
    # nothing usable -> add <|pad|> (already in the tiny vocab, so no resize) and sync the model config
    t = PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(backend))
    model = build_from_config(tiny_llm_config(len(t)))
    ensure_pad_token(t, model)
    assert t.pad_token == "<|pad|>" and model.config.pad_token_id == 0
    assert model.get_input_embeddings().num_embeddings == 640


def test_ensure_pad_token_resizes_only_when_needed():
    tok = tiny_tokenizer()
    tok.add_tokens(["<new1>", "<new2>"])
    model = build_from_config(tiny_llm_config(640))
    ensure_pad_token(tok, model)
    assert model.get_input_embeddings().num_embeddings == 642


def test_gguf_resolution_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_gguf(LLMConfig(backend="gguf", name_or_path="package:no_such_package_xyz"))
    with pytest.raises(FileNotFoundError, match="exactly one .gguf"):
        resolve_gguf(LLMConfig(backend="gguf", name_or_path=str(tmp_path)))
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    d, f, name = resolve_gguf(LLMConfig(backend="gguf", name_or_path=str(tmp_path)))
    assert (d, f) == (tmp_path, "a.gguf") and name.startswith("gguf-a-")
    d2, f2, name2 = resolve_gguf(LLMConfig(backend="gguf", name_or_path=str(tmp_path / "a.gguf")))
    assert (d2, f2, name2) == (d, f, name)
    with pytest.raises(ValueError, match="name_or_path"):
        resolve_gguf(LLMConfig(backend="gguf"))


def test_gguf_architecture_only_without_package():
    # load_weights=False with a recorded hf_config needs neither the GGUF file nor a conversion
    cfg = LLMConfig(backend="gguf", name_or_path="package:no_such_package_xyz", hf_config=tiny_llm_config(640))
    with torch.device("meta"):
        model, tok = load_llm(cfg, load_weights=False)
    assert tok is None and next(model.parameters()).device.type == "meta"
