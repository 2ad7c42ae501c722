"""timm towers (optional extra: ``pip install -c constraints.txt torchvision==0.28.0 timm``).

Backend ``timm``: ``name_or_path`` is a timm model name (``vit_large_patch16_224.mae``,
``hf-hub:timm/...``); ``load_weights`` maps to ``pretrained``. Output: ``forward_features`` with
``num_prefix_tokens`` dropped (ViTs) or the NCHW map permuted (CNNs); ``select_layer`` uses
``forward_intermediates`` (the block output before the final norm, as HF's hidden_states).
Options: ``model`` (the timm name when ``name_or_path`` is None, for random init), ``kwargs`` for
``timm.create_model``.
"""

from __future__ import annotations

import torch

from ...config import EncoderConfig
from ...typed import ConfigError
from ...utils.torchvision_shim import ensure_torchvision_importable
from .base import ENCODER_BACKENDS, VisionEncoder, tokens_to_grid


def import_timm():
    ensure_torchvision_importable()
    try:
        import timm
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision failing to import
        raise ImportError(
            f"the timm encoder backend needs timm ({type(e).__name__}: {e}); install it with "
            "`pip install -c constraints.txt torchvision==0.28.0 timm`"
        ) from None
    return timm


class TimmVisionEncoder(VisionEncoder):
    def __init__(self, config: EncoderConfig, model):
        super().__init__(config)
        self.model = model

    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.to(self.param_dtype)
        sel = self.config.select_layer
        if sel is not None:
            n = len(getattr(self.model, "blocks", getattr(self.model, "stages", [])))
            idx = sel % n if sel < 0 else sel - 1  # hidden_states convention: index 0 = embeddings
            feats = self.model.forward_intermediates(x, indices=[idx], intermediates_only=True, output_fmt="NCHW")
            return feats[0].permute(0, 2, 3, 1)
        out = self.model.forward_features(x)
        if out.dim() == 4:
            return out.permute(0, 2, 3, 1)
        prefix = int(getattr(self.model, "num_prefix_tokens", 1))
        return tokens_to_grid(out, drop_cls=True, num_prefix=prefix)


def build_timm(cfg: EncoderConfig, load_weights: bool = True) -> TimmVisionEncoder:
    timm = import_timm()
    name = cfg.name_or_path or cfg.options.get("model")
    if not name:
        raise ConfigError(f"encoder {cfg.id!r}: the timm backend needs name_or_path or options.model")
    model = timm.create_model(
        name, pretrained=bool(load_weights and cfg.name_or_path), num_classes=0, **cfg.options.get("kwargs", {})
    )
    return TimmVisionEncoder(cfg, model.eval())


ENCODER_BACKENDS.register("timm", build_timm)
