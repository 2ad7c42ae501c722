"""HF transformers vision towers: CLIP, SigLIP, DINOv2 (+registers), ConvNeXt (single stage or multi-stage
fusion), ViT-MAE, and a generic vision ``AutoModel`` fallback.

One class, :class:`HFVisionEncoder`, wraps the HF model (``self.model``); a small per-architecture adapter
knows how many prefix tokens to drop and how to call the model. Backends (``EncoderConfig.backend``):

- ``hf``: picks the adapter from ``model_type`` (of ``cfg.hf_config``, else of the checkpoint's config);
- ``hf_clip``, ``hf_siglip``, ``hf_dinov2``, ``hf_convnext``, ``hf_vit_mae``: force one architecture
  (a full CLIP / SigLIP checkpoint with a text tower loads its vision tower only);
- ``hf_auto``: the generic ``AutoModel`` path for any other vision backbone (patch tokens or a CNN map).

``cfg.hf_config`` is the architecture dict (``PretrainedConfig.to_dict()``) of the vision model itself; it is
filled in after loading pretrained weights so that a saved Cambrian checkpoint rebuilds the tower offline.

Options (``cfg.options``):
- ConvNeXt ``stages``: hidden-state indices (1..4) of the stages to fuse; each is resized bilinearly (fp32)
  to ``cfg.out_grid`` and concatenated on channels (Cambrian's ``clip-convnext-XXL-multi-stage``);
- ConvNeXt ``norm_eps``: LayerNorm epsilon of every norm (HF hard-codes 1e-6; timm's XXL uses 1e-5);
- ``num_prefix_tokens``: override the number of leading non-patch tokens to drop (generic backend).
"""

from __future__ import annotations

import torch

from ...config import EncoderConfig
from ...errors import InputError, WeightsUnavailable
from ...hub import hub_kwargs, offline
from ...typed import ConfigError
from ..buildable import architecture_errors
from .base import ENCODER_BACKENDS, VisionEncoder, resize_grid, tokens_to_grid


def config_from_dict(d: dict):
    """``PretrainedConfig.to_dict()`` output -> the matching transformers config object."""
    from transformers import AutoConfig

    d = dict(d)
    model_type = d.pop("model_type", None)
    if not model_type:
        raise ConfigError("encoder hf_config has no 'model_type'; cannot tell which architecture to build")
    for k in ("transformers_version", "_name_or_path", "architectures", "auto_map"):  # auto_map: no custom code
        d.pop(k, None)
    return AutoConfig.for_model(model_type, **d)


# ------------------------------------------------------------------------------------------------------
# adapters: one per architecture family
# ------------------------------------------------------------------------------------------------------
class _Adapter:
    model_types: tuple[str, ...] = ()
    model_class = "AutoModel"
    config_class: str | None = None  # used to extract a sub-config (vision part) from a full checkpoint
    interpolate_kw = False  # the model's forward takes interpolate_pos_encoding

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)

    def load_config(self, name_or_path: str, **kw):
        import transformers

        cls = getattr(transformers, self.config_class) if self.config_class else transformers.AutoConfig
        return cls.from_pretrained(name_or_path, **kw)

    def num_prefix(self, model, cfg: EncoderConfig) -> int:
        return 1

    def forward(self, model, px: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
        kw = {}
        if cfg.select_layer is not None:
            kw["output_hidden_states"] = True
        image_size = getattr(model.config, "image_size", None)
        if self.interpolate_kw and image_size is not None and tuple(px.shape[-2:]) != _pair(image_size):
            kw["interpolate_pos_encoding"] = True
        kw.update(self.extra_kwargs(model, px))
        out = model(pixel_values=px, **kw)
        hidden = out.hidden_states[cfg.select_layer] if cfg.select_layer is not None else out.last_hidden_state
        return self.to_grid(hidden, model, cfg)

    def extra_kwargs(self, model, px) -> dict:
        return {}

    def to_grid(self, hidden: torch.Tensor, model, cfg: EncoderConfig) -> torch.Tensor:
        if hidden.dim() == 4:  # CNN map [B, C, h, w]
            return hidden.permute(0, 2, 3, 1)
        prefix = cfg.options.get("num_prefix_tokens")
        if prefix is None:
            prefix = self.num_prefix(model, cfg)
        if not cfg.drop_cls and prefix:
            raise ConfigError(
                f"encoder {cfg.id!r}: drop_cls=False cannot give a square grid ({prefix} prefix token(s)); "
                "the grid contract [B, s, s, C] needs them dropped"
            )
        return tokens_to_grid(hidden, drop_cls=True, num_prefix=prefix)


def _pair(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


class _CLIP(_Adapter):
    model_types = ("clip_vision_model", "clip")
    model_class = "CLIPVisionModel"
    config_class = "CLIPVisionConfig"
    interpolate_kw = True
    # select_layer None -> last_hidden_state = output of the last layer (HF applies post_layernorm only to
    # the pooled CLS); the official Cambrian CLIP uses hidden_states[-2] (select_layer=-2).


class _SigLIP(_Adapter):
    model_types = ("siglip_vision_model", "siglip")
    model_class = "SiglipVisionModel"
    config_class = "SiglipVisionConfig"
    interpolate_kw = True

    # no CLS token; last_hidden_state is after post_layernorm (= timm trunk.forward_features, docs/official-code.md#towers)
    def num_prefix(self, model, cfg):
        return 0


class _DINOv2(_Adapter):
    model_types = ("dinov2", "dinov2_with_registers")
    model_class = "AutoModel"
    # last_hidden_state is after the final layernorm (docs/official-code.md#towers); position table interpolated automatically

    def num_prefix(self, model, cfg):
        return 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)


class _ViTMAE(_Adapter):
    model_types = ("vit_mae",)
    model_class = "ViTMAEModel"
    config_class = "ViTMAEConfig"
    interpolate_kw = True

    def extra_kwargs(self, model, px):
        # MAE shuffles patches by argsort(noise) even with mask_ratio 0: increasing noise keeps the order.
        p = _pair(model.config.patch_size)
        n = (px.shape[-2] // p[0]) * (px.shape[-1] // p[1])
        return {"noise": torch.arange(n, device=px.device, dtype=torch.float32).expand(px.shape[0], n)}

    def load_config(self, name_or_path, **kw):
        c = super().load_config(name_or_path, **kw)
        c.mask_ratio = 0.0
        return c


class _ConvNeXt(_Adapter):
    model_types = ("convnext", "convnextv2")
    model_class = "AutoModel"

    def forward(self, model, px, cfg):
        stages = cfg.options.get("stages")
        if not stages:
            if cfg.select_layer is None:
                return model(pixel_values=px).last_hidden_state.permute(0, 2, 3, 1)
            stages = [cfg.select_layer]
        out = model(pixel_values=px, output_hidden_states=True)
        maps = [out.hidden_states[i].permute(0, 2, 3, 1) for i in stages]
        if len(maps) == 1:
            return maps[0]
        side = cfg.out_grid
        return torch.cat(
            [m if m.shape[1] == side and m.shape[2] == side else resize_grid(m, side) for m in maps], dim=-1
        )


class _Generic(_Adapter):
    model_types = ()
    model_class = "AutoModel"

    def num_prefix(self, model, cfg):
        return -1  # decided from the token count in to_grid

    def to_grid(self, hidden, model, cfg):
        if hidden.dim() == 3 and cfg.options.get("num_prefix_tokens") is None:
            n = hidden.shape[1]
            regs = int(getattr(model.config, "num_register_tokens", 0) or 0)
            s = int((n - regs) ** 0.5)
            prefix = n - s * s
            return tokens_to_grid(hidden, drop_cls=True, num_prefix=prefix)
        return super().to_grid(hidden, model, cfg)


ADAPTERS = {"clip": _CLIP(), "siglip": _SigLIP(), "dinov2": _DINOv2(), "convnext": _ConvNeXt(), "vit_mae": _ViTMAE()}
_GENERIC = _Generic()


def adapter_for_model_type(model_type: str | None) -> _Adapter:
    for a in ADAPTERS.values():
        if model_type in a.model_types:
            return a
    return _GENERIC


# ------------------------------------------------------------------------------------------------------
class HFVisionEncoder(VisionEncoder):
    def __init__(self, config: EncoderConfig, model, adapter: _Adapter):
        super().__init__(config)
        self.model = model
        self.adapter = adapter

    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        px = pixel_values.to(self.param_dtype)
        return self.adapter.forward(self.model, px, self.config)


def _apply_options(model, cfg: EncoderConfig) -> None:
    eps = cfg.options.get("norm_eps")
    if eps is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.eps = float(eps)


def build_hf_encoder(cfg: EncoderConfig, load_weights: bool = True, family: str | None = None) -> HFVisionEncoder:
    if load_weights and cfg.name_or_path:
        model, adapter = _load_pretrained(cfg, family)
        hf = model.config.to_dict()
        for k in ("transformers_version", "_name_or_path", "architectures", "auto_map"):
            hf.pop(k, None)
        cfg.hf_config = hf
    else:
        if not cfg.hf_config:
            raise ConfigError(
                f"encoder {cfg.id!r}: no weights to load (load_weights={load_weights}, name_or_path="
                f"{cfg.name_or_path!r}) and no hf_config architecture to build a random tower from"
            )
        with architecture_errors(f"encoder {cfg.id!r} hf_config"):
            hf_cfg = config_from_dict(cfg.hf_config)
            adapter = ADAPTERS[family] if family else adapter_for_model_type(hf_cfg.model_type)
            if isinstance(adapter, _ViTMAE):
                hf_cfg.mask_ratio = 0.0
            model = adapter.model_cls()(hf_cfg) if adapter.model_class != "AutoModel" else _auto_from_config(hf_cfg)
    _apply_options(model, cfg)
    enc = HFVisionEncoder(cfg, model, adapter)
    return enc


def _auto_from_config(hf_cfg):
    from transformers import AutoModel

    return AutoModel.from_config(hf_cfg, trust_remote_code=False)


def _load_pretrained(cfg: EncoderConfig, family: str | None):
    from transformers import AutoConfig

    path = cfg.name_or_path
    kw = hub_kwargs()  # never trust_remote_code: a tower directory with an ``auto_map`` runs none of its code
    try:
        if family:
            adapter = ADAPTERS[family]
            hf_cfg = adapter.load_config(path, **kw)
        else:
            probe = AutoConfig.from_pretrained(path, **kw)
            adapter = adapter_for_model_type(probe.model_type)
            hf_cfg = adapter.load_config(path, **kw) if adapter.config_class else probe
        if isinstance(adapter, _ViTMAE):
            hf_cfg.mask_ratio = 0.0
        model = adapter.model_cls().from_pretrained(path, config=hf_cfg, **kw)
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise InputError(
            f"encoder {cfg.id!r}: {path} needs its own Python code to load (an 'auto_map' in its config); cambrian "
            "never runs code from a model directory (use a tower whose architecture transformers ships)"
        ) from None
    except OSError as e:
        hint = (
            " HF_HUB_OFFLINE is set: only a local directory or a hub id already in the HF cache can load."
            if offline()
            else ""
        )
        raise WeightsUnavailable(f"cannot load weights of encoder {cfg.id!r} from {path!r}: {e}.{hint}") from None
    return model.float().eval(), adapter


ENCODER_BACKENDS.register("hf", lambda cfg, load_weights=True: build_hf_encoder(cfg, load_weights))
ENCODER_BACKENDS.register("hf_auto", lambda cfg, load_weights=True: _build_generic(cfg, load_weights))
for _fam in ADAPTERS:
    ENCODER_BACKENDS.register(
        f"hf_{_fam}", (lambda fam: lambda cfg, load_weights=True: build_hf_encoder(cfg, load_weights, fam))(_fam)
    )


def _build_generic(cfg: EncoderConfig, load_weights: bool) -> HFVisionEncoder:
    enc = build_hf_encoder(cfg, load_weights)
    enc.adapter = _GENERIC
    return enc
