"""open_clip towers (optional extra: ``pip install -c constraints.txt torchvision==0.28.0 open_clip_torch``).

Cambrian's ConvNeXt towers are open_clip models whose image trunk is a timm ConvNeXt
(``hf-hub:laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup``, docs/official-code.md#towers). Backend ``open_clip``:

- with weights: open_clip loads the model, and the timm trunk's state dict is renamed into an HF
  ``ConvNextModel`` built from the same dims (:func:`timm_convnext_to_hf`), so the tower is always the HF
  module (same parameter names whether it was built offline from ``hf_config`` or from the hub);
- without weights (``load_weights=False``, e.g. on the meta device): the HF ``ConvNextModel`` from
  ``cfg.hf_config``; open_clip is not needed.

The trunk's raw stage outputs are taken (no head, no final norm); ``options.stages`` selects the stages to
fuse (see ``hf.py``). The timm -> HF renaming was written from the two libraries' documented layouts and is
checked on synthetic keys only (open_clip is not installed on the development machines).
"""

from __future__ import annotations

import re

from ...config import EncoderConfig
from ...typed import ConfigError
from ...utils.torchvision_shim import ensure_torchvision_importable
from .base import ENCODER_BACKENDS
from .hf import build_hf_encoder


def import_open_clip():
    ensure_torchvision_importable()
    try:
        import open_clip
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision failing to import
        raise ImportError(
            f"the open_clip encoder backend needs open_clip_torch ({type(e).__name__}: {e}); install it with "
            "`pip install -c constraints.txt torchvision==0.28.0 open_clip_torch`"
        ) from None
    return open_clip


_BLOCK = {"conv_dw": "dwconv", "norm": "layernorm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2"}


def timm_convnext_key(key: str) -> str | None:
    """timm ConvNeXt trunk key -> HF ConvNextModel key (None: not part of the HF backbone, e.g. the head fc)."""
    if key.startswith("stem.0."):
        return "embeddings.patch_embeddings." + key[len("stem.0.") :]
    if key.startswith("stem.1."):
        return "embeddings.layernorm." + key[len("stem.1.") :]
    if key.startswith("head.norm."):
        return "layernorm." + key[len("head.norm.") :]
    m = re.fullmatch(r"stages\.(\d+)\.downsample\.(\d+)\.(\w+)", key)
    if m:
        return f"encoder.stages.{m.group(1)}.downsampling_layer.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key)
    if m:
        s, b, rest = m.groups()
        if rest == "gamma":
            return f"encoder.stages.{s}.layers.{b}.layer_scale_parameter"
        mod, _, param = rest.rpartition(".")
        if mod in _BLOCK:
            return f"encoder.stages.{s}.layers.{b}.{_BLOCK[mod]}.{param}"
    return None


def timm_convnext_to_hf(state_dict: dict) -> dict:
    out = {}
    for k, v in state_dict.items():
        new = timm_convnext_key(k)
        if new is not None:
            out[new] = v
    return out


def build_open_clip(cfg: EncoderConfig, load_weights: bool = True):
    if not (load_weights and cfg.name_or_path):
        return build_hf_encoder(cfg, load_weights=False, family="convnext")
    if not cfg.hf_config:
        raise ConfigError(f"encoder {cfg.id!r}: the open_clip backend needs hf_config (the ConvNeXt dims)")
    open_clip = import_open_clip()
    pretrained = cfg.options.get("pretrained")  # a tag for non hf-hub model names
    model = open_clip.create_model(cfg.name_or_path, pretrained=pretrained)
    trunk = getattr(model.visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "stages"):
        raise ConfigError(f"encoder {cfg.id!r}: {cfg.name_or_path} has no timm ConvNeXt trunk")
    enc = build_hf_encoder(cfg, load_weights=False, family="convnext")
    sd = timm_convnext_to_hf(trunk.state_dict())
    missing, unexpected = enc.model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("layernorm.")]  # final norm: unused by the tower
    if missing or unexpected:
        raise ConfigError(
            f"encoder {cfg.id!r}: timm->HF ConvNeXt mismatch missing={missing[:8]} unexpected={unexpected[:8]}"
        )
    return enc


ENCODER_BACKENDS.register("open_clip", build_open_clip)
