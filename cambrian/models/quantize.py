"""Quantised loading (``--quantize`` / ``CambrianModel.load(..., quantize=...)``): the LLM's and the connector's
linear layers with 8-bit (or 4-bit) weights; the vision towers stay in their dtype.

- ``int8`` on CPU: PyTorch's own dynamic quantisation (``torch.ao.quantization.quantize_dynamic``, the fbgemm
  kernels): int8 weights per output channel, activations quantised per call with one scale per tensor. The LM head
  is included (on a small LLM with a large vocabulary it is a fifth of a decode step); a tied input embedding stays
  float. The MLP output projections (``down_proj``, :data:`CPU_FLOAT_LAYERS`) stay float: their inputs carry
  outlier activations that one int8 scale per tensor cannot represent. Measured on the nano demo checkpoint
  (easy-VQA colour + shape, 99 questions): every other group of layers in int8 alone keeps the fp32 accuracy
  (82.8-83.8% against 82.8%), ``down_proj`` alone drops it to 49.5%. ``benchmarks/quantize.py`` measures the
  result (decode speed and accuracy beside fp32 in one run).
  torchao is PyTorch's successor API, but its int8 configs run slower than fp32 in eager mode on CPU (they rely on
  ``torch.compile``): measured 3.3x slower on nano's layer shapes, against 6x faster for ``quantize_dynamic``.
- ``int8`` / ``nf4`` on CUDA: bitsandbytes, as the official code's ``load_8bit`` / ``load_4bit`` (LLM.int8() with
  outlier threshold 6.0; NF4 with double quantisation and bf16 compute); the LM head stays in bf16, as Hugging
  Face's bitsandbytes integration leaves it. Not run here (no GPU): the module swap itself is tested on CPU through
  bitsandbytes' CPU backend.

A quantised model is for inference: it cannot be saved or trained (``save_pretrained`` refuses it).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from ..errors import InputError

METHODS = ("int8", "nf4")
CPU_FLOAT_LAYERS = ("down_proj",)  # linear layers (by name) the CPU int8 path leaves in float (see above)


def check_method(method: str | None) -> str | None:
    if method is not None and method not in METHODS:
        raise InputError(f"quantize: unknown method {method!r}; valid: {', '.join(METHODS)}")
    return method


def quantized_parts(model) -> dict[str, nn.Module]:
    """The parts whose linear layers are quantised."""
    return {"llm": model.llm, "connector": model.connector}


def quantize_model(model, method: str, device: str | torch.device = "cpu"):
    """Quantise ``model`` in place for ``device`` (it ends up there) and return it; ``model.quantization`` records
    the method. CPU accepts ``int8``; CUDA ``int8`` and ``nf4`` (bitsandbytes)."""
    check_method(method)
    device = torch.device(device)
    if getattr(model, "quantization", None):
        raise InputError(f"the model is already quantised ({model.quantization})")
    if device.type == "cpu":
        if method != "int8":
            raise InputError(f"--quantize {method} needs a CUDA GPU (bitsandbytes); on CPU use --quantize int8")
        model.to("cpu").float()
        _cpu_int8(model)
    elif device.type == "cuda":
        bnb = _bitsandbytes(method)
        model.to(torch.bfloat16)
        _swap_linear(model, method, bnb, skip=_lm_head(model))
        model.to(device)
    else:
        raise InputError(f"--quantize {method} runs on cpu or cuda, not {device.type}")
    model.quantization = method
    return model


def _lm_head(model) -> set[int]:
    head = model.llm.get_output_embeddings() if hasattr(model.llm, "get_output_embeddings") else None
    return {id(head)} if head is not None else set()


def _cpu_int8(model) -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():  # torch.ao.quantization is marked deprecated in favour of torchao (see above)
        warnings.simplefilter("ignore")
        for part in quantized_parts(model).values():
            names = {
                n
                for n, m in part.named_modules()
                if type(m) is nn.Linear and n.rsplit(".", 1)[-1] not in CPU_FLOAT_LAYERS
            }
            quantize_dynamic(part, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8, inplace=True)


def _bitsandbytes(method: str):
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise InputError(
            f"--quantize {method} on CUDA needs bitsandbytes: pip install 'cambrian[quant]' (or bitsandbytes)"
        ) from None
    if not torch.cuda.is_available():
        raise InputError(f"--quantize {method} on CUDA needs a GPU, and torch sees none")
    return bnb


def _swap_linear(model, method: str, bnb, skip: set[int]) -> int:
    """Replace every ``nn.Linear`` of the quantised parts (except ``skip``) by its bitsandbytes counterpart; the
    weights are quantised when the module moves to the GPU. Returns how many were replaced."""
    n = 0
    for part in quantized_parts(model).values():
        for parent in list(part.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear or id(child) in skip:
                    continue
                setattr(parent, name, _bnb_linear(child, method, bnb))
                n += 1
    return n


def _bnb_linear(lin: nn.Linear, method: str, bnb) -> nn.Module:
    w = lin.weight.data
    if method == "int8":
        q = bnb.nn.Linear8bitLt(
            lin.in_features, lin.out_features, bias=lin.bias is not None, has_fp16_weights=False, threshold=6.0
        )
        q.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    else:
        q = bnb.nn.Linear4bit(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            compute_dtype=torch.bfloat16,
            quant_type="nf4",
            compress_statistics=True,
        )
        q.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True)
    if lin.bias is not None:
        q.bias = nn.Parameter(lin.bias.data, requires_grad=False)
    return q


def weight_bytes(module: nn.Module) -> int:
    """Bytes of the weights and biases of ``module`` as stored (int8 packed weights count one byte a value)."""
    total, seen = 0, set()
    for m in module.modules():
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):  # a dynamic-quantised Linear
            w, b = m._packed_params._weight_bias()
            total += w.numel() * w.element_size() + (b.numel() * b.element_size() if b is not None else 0)
            if w.qscheme() == torch.per_channel_affine:  # a scale and a zero point per output channel
                total += sum(
                    t.numel() * t.element_size() for t in (w.q_per_channel_scales(), w.q_per_channel_zero_points())
                )
            continue
        for p in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel() * p.element_size()
    return total
