"""Vision encoders: PIL images -> ``[B, s, s, C]`` feature grids.

Public API::

    from cambrian.models.encoders import build_encoder, ENCODER_BACKENDS, ENCODER_PRESETS, expand_encoder_entry
    cfg = expand_encoder_entry("clip-vit-l-14-336")         # or {"preset": "efficientnet-lite0", "image_size": 256}
    enc = build_encoder(cfg, load_weights=True)             # VisionEncoder; cfg.hf_config filled after loading
    grid = enc(enc.preprocess(images))                      # [B, cfg.out_grid, cfg.out_grid, cfg.hidden_size]

Backends (``EncoderConfig.backend``): ``hf`` (dispatch on model_type), ``hf_clip``, ``hf_siglip``, ``hf_dinov2``,
``hf_convnext``, ``hf_vit_mae``, ``hf_auto``, ``efficientnet_lite0``, ``dinov2_onnx``, ``open_clip``, ``timm``
(the last two need the optional extras; importing this package never imports them).
"""

from __future__ import annotations

from ...typed import ConfigError
from ...utils.torchvision_shim import ensure_torchvision_importable

# a CUDA torchvision wheel next to the CPU torch breaks every transformers model class unless shimmed first
ensure_torchvision_importable()

from ...config import EncoderConfig  # noqa: E402
from ...presets.encoders import ENCODER_PRESETS, expand_encoder_entry, get_encoder_preset, list_encoder_presets  # noqa: E402
from . import dinov2_onnx, efficientnet_lite, hf, open_clip_backend, timm_backend  # noqa: E402, F401 (register backends)
from .base import ENCODER_BACKENDS, VisionEncoder, resize_grid, tokens_to_grid  # noqa: E402
from .preprocess import expand2square, load_image, preprocess_images  # noqa: E402

__all__ = [
    "ENCODER_BACKENDS",
    "ENCODER_PRESETS",
    "VisionEncoder",
    "build_encoder",
    "expand_encoder_entry",
    "get_encoder_preset",
    "list_encoder_presets",
    "preprocess_images",
    "expand2square",
    "load_image",
    "resize_grid",
    "tokens_to_grid",
]


def build_encoder(cfg: EncoderConfig | str | dict, load_weights: bool = True) -> VisionEncoder:
    """Build the tower of ``cfg`` (an ``EncoderConfig``, a preset id or a config entry mapping).

    ``load_weights=False`` (or ``name_or_path`` None for HF towers) builds from ``cfg.hf_config`` with random
    init; this also works under ``with torch.device("meta"):``. After loading pretrained weights,
    ``cfg.hf_config`` holds the architecture so a saved checkpoint rebuilds offline. The tower is frozen
    (``requires_grad`` False, eval mode) when ``cfg.frozen``.
    """
    if not isinstance(cfg, EncoderConfig):
        cfg = expand_encoder_entry(cfg)
    enc = ENCODER_BACKENDS.get(cfg.backend)(cfg, load_weights=load_weights)
    enc.freeze(cfg.frozen)
    _check_dims(enc)
    return enc


def _check_dims(enc: VisionEncoder) -> None:
    """Cheap sanity check of the declared hidden size against the HF architecture (no forward)."""
    hf_cfg = getattr(getattr(enc, "model", None), "config", None)
    c = enc.config
    if hf_cfg is None or c.options.get("stages"):
        return
    width = getattr(hf_cfg, "hidden_size", None)
    if getattr(hf_cfg, "model_type", None) in ("convnext", "convnextv2"):
        width = hf_cfg.hidden_sizes[-1] if c.select_layer is None else None
    if width is not None and width != c.hidden_size:
        raise ConfigError(f"encoder {c.id!r}: hidden_size={c.hidden_size} but the tower outputs {width} channels")
