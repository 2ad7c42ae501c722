"""Quantised loading: CPU int8 (PyTorch dynamic quantisation) of the LLM's and connector's linear layers with the
towers untouched, answers close to fp32, the weight bytes, refusals (saving, nf4 without a GPU, a missing
bitsandbytes), and the bitsandbytes module swap that CUDA uses, run here on bitsandbytes' CPU backend."""

from __future__ import annotations

import builtins

import pytest
import torch
import torch.nn as nn

from cambrian.errors import InputError
from cambrian.models import quantize as qz
from cambrian.models.cambrian_model import CambrianModel


def _tiny():
    """The random tiny preset at its default init (weights of the usual scale, like a trained model's)."""
    from cambrian.presets.models import load_preset

    torch.manual_seed(0)
    return CambrianModel.from_config(load_preset("tiny")).eval()


def _count(module, cls):
    return sum(type(m) is cls for m in module.modules())


DYNAMIC = torch.ao.nn.quantized.dynamic.Linear


def test_cpu_int8_quantises_llm_and_connector_only_and_stays_close():
    fp = _tiny()
    q = qz.quantize_model(_tiny(), "int8", "cpu")
    assert q.quantization == "int8"
    for part in ("llm", "connector"):
        kept = [n for n, m in getattr(fp, part).named_modules() if type(m) is nn.Linear and n.endswith("down_proj")]
        n = _count(getattr(fp, part), nn.Linear)
        assert n > 0 and _count(getattr(q, part), DYNAMIC) == n - len(kept)
        assert _count(getattr(q, part), nn.Linear) == len(kept)  # the MLP output projections stay float
    assert type(q.llm.model.layers[0].mlp.down_proj) is nn.Linear and type(q.llm.lm_head) is DYNAMIC
    assert _count(q.encoders, DYNAMIC) == 0 and _count(q.encoders, nn.Linear) == _count(fp.encoders, nn.Linear) > 0
    prompts = ["what colour is the cube?", "<image>\ndescribe it"]
    from PIL import Image

    images = [[], [Image.new("RGB", (40, 30), (200, 30, 30))]]
    a, b = fp.next_token_logits(prompts, images), q.next_token_logits(prompts, images)
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.999
    # each quantised layer: int8 weights (1 byte for 4) plus a float64 scale and an int64 zero point per output row
    quantised = [m for n, m in fp.llm.named_modules() if type(m) is nn.Linear and not n.endswith("down_proj")]
    saved = sum(3 * m.weight.numel() - 16 * m.out_features for m in quantised)
    assert qz.weight_bytes(q.llm) == qz.weight_bytes(fp.llm) - saved
    assert q.generate_text(prompts, images, max_new_tokens=6)  # the decode loop runs on quantised layers


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao.quantization, see cambrian.models.quantize
def test_weight_bytes_by_hand():
    lin = nn.Linear(8, 4)  # 32 weights + 4 biases, fp32
    assert qz.weight_bytes(lin) == (32 + 4) * 4
    q = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(8, 4)), {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    )
    # int8 weights, fp32 bias, a float64 scale and an int64 zero point per output channel
    assert qz.weight_bytes(q) == 32 * 1 + 4 * 4 + 4 * (8 + 8)


def test_refusals_are_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="nf4 needs a CUDA GPU"):
        qz.quantize_model(_tiny(), "nf4", "cpu")
    with pytest.raises(InputError, match="unknown method 'int4'"):
        CambrianModel.load("tiny", quantize="int4")
    q = CambrianModel.load("tiny", quantize="int8", device="cpu")
    with pytest.raises(InputError, match="int8-quantised model cannot be saved"):
        q.save_pretrained(tmp_path / "x")
    with pytest.raises(InputError, match="already quantised"):
        qz.quantize_model(q, "int8", "cpu")
    real_import = builtins.__import__

    def no_bnb(name, *a, **k):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(InputError, match="needs bitsandbytes"):
        qz.quantize_model(_tiny(), "nf4", "cuda")
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("bitsandbytes")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="needs a GPU"):
        qz.quantize_model(_tiny(), "int8", "cuda")


@pytest.mark.parametrize("method, weight_dtype", [("int8", torch.int8), ("nf4", torch.uint8)])
def test_bitsandbytes_swap_keeps_the_lm_head_and_stays_close(method, weight_dtype):
    """What --quantize does on CUDA, minus the GPU: every linear layer of the LLM and connector but the LM head
    becomes its bitsandbytes counterpart, quantised when moved (bitsandbytes' CPU backend here), and the logits stay
    close to the float model's."""
    bnb = pytest.importorskip("bitsandbytes")
    fp = _tiny()
    q = _tiny()
    head = q.llm.get_output_embeddings()
    n = qz._swap_linear(q, method, bnb, skip=qz._lm_head(q))
    q.to("cpu")
    assert n == sum(type(m) is nn.Linear for p in (fp.llm, fp.connector) for m in p.modules()) - 1
    assert type(q.llm.get_output_embeddings()) is nn.Linear and q.llm.get_output_embeddings() is head
    layer = next(m for m in q.llm.modules() if type(m).__module__.startswith("bitsandbytes"))
    assert layer.weight.dtype == weight_dtype
    a = fp.next_token_logits(["what colour is the cube?"])
    b = q.next_token_logits(["what colour is the cube?"])
    assert torch.nn.functional.cosine_similarity(a, b.float(), dim=-1).min() > 0.99


def test_cli_quantize_flag_reaches_the_loader(monkeypatch, capsys):
    from cambrian.cli.main import main

    seen = {}

    def fake_load(spec, towers=None, quantize=None, device=None, **kw):
        seen.update(spec=spec, quantize=quantize, device=device)
        return _tiny()

    monkeypatch.setattr(CambrianModel, "load", staticmethod(fake_load))
    assert main(["chat", "--model", "tiny", "--prompt", "hi", "--max-new-tokens", "2", "--quantize", "int8"]) == 0
    assert seen == {"spec": "tiny", "quantize": "int8", "device": "cpu"}
    with pytest.raises(SystemExit):
        main(["chat", "--model", "tiny", "--prompt", "hi", "--quantize", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
