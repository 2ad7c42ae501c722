"""Vision encoders: tiny random HF towers, presets, meta-device construction, preprocessing, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from PIL import Image

from cambrian.config import EncoderConfig
from cambrian.models.encoders import (
    ENCODER_BACKENDS,
    ENCODER_PRESETS,
    build_encoder,
    expand_encoder_entry,
    get_encoder_preset,
    resize_grid,
)
from cambrian.models.encoders.preprocess import expand2square, load_image, preprocess_images
from cambrian.presets.models import config_from_mapping
from cambrian.registry import UnknownKeyError

TINY_HF = ["tiny-clip", "tiny-siglip", "tiny-dinov2", "tiny-vitmae", "tiny-convnext"]


def _px(cfg, b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, cfg.image_size, cfg.image_size, generator=g)


def _clone(enc, **changes):
    """A second encoder with the same weights and a modified config."""
    cfg = dataclasses.replace(enc.config, **changes)
    other = build_encoder(cfg, load_weights=False)
    other.load_state_dict(enc.state_dict())
    return other


# ---- shapes, layers, prefix tokens ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", TINY_HF)
def test_tiny_output_shape(preset):
    enc = build_encoder(preset, load_weights=False)
    cfg = enc.config
    out = enc(_px(cfg))
    assert out.shape == (2, cfg.out_grid, cfg.out_grid, cfg.hidden_size)
    assert cfg.out_grid == 4 and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "preset,prefix", [("tiny-clip", 1), ("tiny-dinov2", 1), ("tiny-vitmae", 1), ("tiny-siglip", 0)]
)
def test_select_layer_and_prefix_tokens(preset, prefix):
    enc = build_encoder(get_encoder_preset(preset), load_weights=False)
    enc_final = _clone(enc, select_layer=None)
    enc_m2 = _clone(enc, select_layer=-2)
    x = _px(enc.config)
    kw = {"noise": torch.arange(16.0).expand(2, 16)} if preset == "tiny-vitmae" else {}
    with torch.no_grad():
        ref = enc.model(pixel_values=x, output_hidden_states=True, **kw)
    final, m2 = enc_final(x), enc_m2(x)
    assert not torch.allclose(final, m2)
    # prefix (CLS) tokens dropped, row-major grid
    assert torch.equal(final, ref.last_hidden_state[:, prefix:].reshape(2, 4, 4, 32))
    assert torch.equal(m2, ref.hidden_states[-2][:, prefix:].reshape(2, 4, 4, 32))


def test_dinov2_register_tokens_dropped():
    hf = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=32,
        patch_size=8,
        num_register_tokens=3,
    ).to_dict()
    cfg = EncoderConfig(id="reg", backend="hf", image_size=32, hidden_size=32, native_grid=4, hf_config=hf)
    enc = build_encoder(cfg, load_weights=False)
    x = _px(cfg)
    with torch.no_grad():
        tokens = enc.model(pixel_values=x).last_hidden_state
    assert tokens.shape[1] == 1 + 3 + 16
    assert torch.equal(enc(x), tokens[:, 4:].reshape(2, 4, 4, 32))


def test_vitmae_keeps_patch_order_and_is_deterministic():
    enc = build_encoder("tiny-vitmae", load_weights=False)
    x = _px(enc.config)
    assert enc.model.config.mask_ratio == 0.0
    assert torch.equal(enc(x), enc(x))
    # increasing noise -> identity ids_restore: patches keep their raster order
    with torch.no_grad():
        out = enc.model(pixel_values=x, noise=torch.arange(16.0).expand(2, 16))
    assert torch.equal(out.ids_restore[0], torch.arange(16))


def test_convnext_multi_stage_fusion_by_hand():
    enc = build_encoder("tiny-convnext", load_weights=False)
    x = _px(enc.config)
    with torch.no_grad():
        hs = enc.model(pixel_values=x, output_hidden_states=True).hidden_states
    assert [h.shape[-1] for h in hs[1:]] == [16, 8, 4, 2]
    parts = []
    for h in hs[1:]:
        t = F.interpolate(h.float(), size=(4, 4), mode="bilinear", align_corners=False)
        parts.append(t.permute(0, 2, 3, 1))
    assert torch.allclose(enc(x), torch.cat(parts, -1), atol=1e-6)
    single = _clone(enc, options={}, hidden_size=32, native_grid=2)
    assert torch.equal(single(x), hs[-1].permute(0, 2, 3, 1))


@pytest.mark.parametrize("preset", ["tiny-clip", "tiny-dinov2"])
def test_grid_resize_to_given_side(preset):
    enc = build_encoder(preset, load_weights=False)
    small = _clone(enc, grid_size=2)
    x = _px(enc.config)
    native = enc(x)
    out = small(x)
    assert out.shape == (2, 2, 2, 32)
    # 4 -> 2 bilinear, align_corners=False: each output is the mean of a 2x2 block
    assert torch.allclose(out, native.reshape(2, 2, 2, 2, 2, 32).mean(dim=(2, 4)), atol=1e-6)


def test_resize_grid_hand_values():
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 2, 1)
    assert resize_grid(g, 1).item() == pytest.approx(2.5)
    up = resize_grid(g, 4)[0, :, :, 0]
    # src = (dst + 0.5) / 2 - 0.5 clamped: columns sample 0, 0.25, 0.75, 1 -> 1, 1.25, 1.75, 2 on row 0
    assert torch.allclose(up[0], torch.tensor([1.0, 1.25, 1.75, 2.0]))
    assert resize_grid(g.to(torch.bfloat16), 1).dtype == torch.bfloat16


# ---- freezing --------------------------------------------------------------------------------------------
def test_frozen_has_no_grads_and_trainable_has_grads():
    enc = build_encoder("tiny-clip", load_weights=False)
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training  # a frozen tower stays in eval mode
    x = _px(enc.config).requires_grad_(True)
    out = enc(x)
    assert not out.requires_grad

    cfg = dataclasses.replace(get_encoder_preset("tiny-clip"), frozen=False)
    enc2 = build_encoder(cfg, load_weights=False)
    enc2.train()
    assert enc2.model.training
    enc2(_px(cfg)).sum().backward()
    grads = [p.grad for p in enc2.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:3])
    enc2.freeze(True)
    assert not any(p.requires_grad for p in enc2.parameters()) and not enc2.model.training


def test_bf16_tower_takes_fp32_pixels():
    enc = build_encoder("tiny-siglip", load_weights=False).to(torch.bfloat16)
    assert enc(_px(enc.config)).dtype == torch.bfloat16


# ---- loading through name_or_path (hub id or local dir) ----------------------------------------------------
def _tiny_hf_models():
    vit = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    return {
        "clip": (transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vit)), "hf_clip", 1),
        "siglip": (transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**vit)), "hf_siglip", 0),
        "dinov2": (
            transformers.Dinov2Model(
                transformers.Dinov2Config(
                    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32, patch_size=8
                )
            ),
            "hf_dinov2",
            1,
        ),
        "vit_mae": (transformers.ViTMAEModel(transformers.ViTMAEConfig(**vit, mask_ratio=0.0)), "hf_vit_mae", 1),
        "convnext": (
            transformers.ConvNextModel(transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])),
            "hf_convnext",
            None,
        ),
    }


@pytest.mark.parametrize("kind", ["clip", "siglip", "dinov2", "vit_mae", "convnext"])
@pytest.mark.parametrize("backend_style", ["family", "auto"])
def test_save_pretrained_roundtrip(tmp_path, kind, backend_style):
    model, backend, prefix = _tiny_hf_models()[kind]
    model.eval()
    model.save_pretrained(tmp_path)
    size = 64 if kind == "convnext" else 32
    grid, width = (2, 32) if kind == "convnext" else (4, 32)
    cfg = EncoderConfig(
        id=f"t-{kind}",
        backend=backend if backend_style == "family" else "hf",
        name_or_path=str(tmp_path),
        image_size=size,
        hidden_size=width,
        native_grid=grid,
    )
    enc = build_encoder(cfg, load_weights=True)
    assert cfg.hf_config and cfg.hf_config["model_type"] == model.config.model_type
    x = torch.randn(2, 3, size, size)
    kw = {"noise": torch.arange(16.0).expand(2, 16)} if kind == "vit_mae" else {}
    with torch.no_grad():
        ref = model(pixel_values=x, **kw).last_hidden_state
    expect = ref.permute(0, 2, 3, 1) if prefix is None else ref[:, prefix:].reshape(2, 4, 4, 32)
    out = enc(x)
    assert torch.allclose(out, expect, atol=1e-6)
    # offline rebuild from the recorded architecture (what a saved Cambrian checkpoint does)
    rebuilt = build_encoder(dataclasses.replace(cfg, name_or_path=None), load_weights=False)
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.allclose(rebuilt(x), out, atol=1e-6)


def test_full_clip_checkpoint_loads_vision_tower(tmp_path):
    cfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=99
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    full = transformers.CLIPModel(cfg).eval()
    full.save_pretrained(tmp_path)
    enc_cfg = dataclasses.replace(get_encoder_preset("tiny-clip"), name_or_path=str(tmp_path), hf_config=None)
    enc = build_encoder(enc_cfg)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        hs = full.vision_model(pixel_values=x, output_hidden_states=True).hidden_states
    assert torch.allclose(enc(x), hs[-2][:, 1:].reshape(1, 4, 4, 32), atol=1e-6)
    assert enc_cfg.hf_config["model_type"] == "clip_vision_model"


def test_missing_weights_fail_fast_with_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = dataclasses.replace(get_encoder_preset("tiny-clip"), name_or_path="nobody/definitely-not-cached-xyz")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE.*") as e:
        build_encoder(cfg)
    assert "nobody/definitely-not-cached-xyz" in str(e.value) and "tiny-clip" in str(e.value)
    with pytest.raises(OSError, match="not-a-dir"):
        build_encoder(dataclasses.replace(cfg, name_or_path=str(tmp_path / "not-a-dir")))


def test_no_weights_and_no_architecture_is_an_error():
    cfg = EncoderConfig(id="bare", backend="hf_clip", hf_config=None)
    with pytest.raises(ValueError, match="hf_config"):
        build_encoder(cfg, load_weights=False)


# ---- presets and meta-device construction ---------------------------------------------------------------
def _clip_l14_params(image_size=336, d=1024, layers=24, inter=4096, patch=14):
    n = (image_size // patch) ** 2 + 1
    embed = 3 * patch * patch * d + d + n * d  # patch conv (no bias), class embedding, position table
    layer = 4 * (d * d + d) + 2 * (2 * d) + (d * inter + inter) + (inter * d + d)
    return embed + 2 * d + layers * layer + 2 * d  # + pre_layrnorm, layers, post_layernorm


def test_meta_clip_vit_l_14_336_parameter_count():
    cfg = get_encoder_preset("clip-vit-l-14-336")
    with torch.device("meta"):
        enc = build_encoder(cfg, load_weights=False)
    n = sum(p.numel() for p in enc.parameters())
    assert n == _clip_l14_params() == 303_507_456
    assert all(p.is_meta for p in enc.parameters())


BIG = {
    # preset: (image_size, out_grid, C, parameter count in millions (approx))
    "siglip-so400m-384": (384, 24, 1152, 428.2),
    "clip-vit-l-14-336": (336, 24, 1024, 303.5),
    "clip-vit-l-14-224": (224, 16, 1024, 303.2),
    "dinov2-giant-378": (378, 24, 1536, 1136.5),
    "dinov2-large-518": (518, 24, 1024, 304.4),
    "dinov2-base": (224, 16, 768, 86.6),
    "dinov2-small": (224, 16, 384, 22.1),
    "clip-convnext-xxl-1024": (1024, 96, 6144, 843.4),  # stem + 4 stages fused (see presets.py)
    "clip-convnext-l-1024": (1024, 24, 1536, 196.2),
    "mae-vit-l-16": (224, 14, 1024, 303.3),
    "mae-vit-h-14": (224, 16, 1280, 630.8),
    "dinov2-small-focus": (224, 16, 384, 22.1),
    "efficientnet-lite0": (224, 7, 1280, 4.65),
    "efficientnet-lite0-s16": (224, 14, 112, 4.65),
}


@pytest.mark.parametrize("preset", sorted(BIG))
def test_big_presets_build_on_meta(preset):
    r, grid, c, millions = BIG[preset]
    cfg = get_encoder_preset(preset)
    assert (cfg.image_size, cfg.out_grid, cfg.hidden_size) == (r, grid, c)
    assert cfg.name_or_path or cfg.backend in ("efficientnet_lite0", "dinov2_onnx")
    with torch.device("meta"):
        enc = build_encoder(cfg, load_weights=False)
        out = enc(torch.empty(1, 3, r, r))
    assert out.shape == (1, grid, grid, c)
    assert sum(p.numel() for p in enc.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_official_preprocessing_constants():
    sig, clip, dino = (get_encoder_preset(n) for n in ("siglip-so400m-384", "clip-vit-l-14-336", "dinov2-giant-378"))
    assert sig.image_mean == sig.image_std == (0.5, 0.5, 0.5) and sig.pad_color == (122, 116, 104)
    assert sig.native_grid == 27 and sig.grid_size == 24 and sig.select_layer is None
    assert clip.select_layer == -2 and clip.drop_cls and clip.native_grid == 24
    assert dino.native_grid == 27 and dino.grid_size == 24 and dino.image_mean == (0.485, 0.456, 0.406)
    enc = build_encoder("tiny-dinov2", load_weights=False)
    assert enc.config.pad_color is None  # -> int(255 * ImageNet mean) = (123, 116, 103)
    px = enc.preprocess([Image.new("RGB", (8, 2), (255, 0, 0))])
    corner = px[0, :, 0, 0] * torch.tensor(enc.config.image_std) + torch.tensor(enc.config.image_mean)
    assert torch.allclose(corner * 255, torch.tensor([123.0, 116.0, 103.0]), atol=1e-3)


def test_tiny_presets_documented_and_fast():
    for name in ENCODER_PRESETS.names():
        cfg = get_encoder_preset(name)
        assert cfg.id == name and cfg.backend in ENCODER_BACKENDS
    assert {"tiny-clip", "tiny-siglip", "tiny-dinov2", "tiny-convnext", "tiny-vitmae"} <= set(ENCODER_PRESETS.names())


# ---- preset expansion ----------------------------------------------------------------------------------------
def test_expand_encoder_entry_forms():
    assert expand_encoder_entry("clip-vit-l-14-336").native_grid == 24
    e = expand_encoder_entry({"preset": "efficientnet-lite0", "image_size": 256})
    assert (e.image_size, e.native_grid, e.hidden_size, e.out_grid) == (256, 8, 1280, 8)
    e = expand_encoder_entry({"preset": "tiny-convnext", "grid_size": 2, "options": {"norm_eps": 1e-5}})
    assert e.out_grid == 2 and e.options == {"stages": [1, 2, 3, 4], "norm_eps": 1e-5}
    e = expand_encoder_entry({"preset": "siglip-so400m-384", "image_mean": [0.4, 0.4, 0.4], "frozen": False})
    assert e.image_mean == (0.4, 0.4, 0.4) and not e.frozen and e.pad_color == (122, 116, 104)
    full = expand_encoder_entry({"id": "mine", "backend": "hf", "image_size": 32, "hidden_size": 32, "native_grid": 4})
    assert full.id == "mine" and full.hf_config is None
    cfg = EncoderConfig(id="x")
    assert expand_encoder_entry(cfg) is cfg


def test_expand_encoder_entry_errors():
    with pytest.raises(UnknownKeyError) as e:
        expand_encoder_entry("clip-vit-huge-999")
    msg = str(e.value)
    assert "clip-vit-huge-999" in msg and "clip-vit-l-14-336" in msg and "efficientnet-lite0" in msg
    with pytest.raises(KeyError, match="siglip-so400m-384"):
        expand_encoder_entry({"preset": "nope"})
    with pytest.raises(ValueError, match=r"unknown override key .colour. \(did you mean .pad_color.\?\)"):
        expand_encoder_entry({"preset": "tiny-clip", "colour": 1})
    with pytest.raises(ValueError, match="needs an 'id'"):
        expand_encoder_entry({"backend": "hf"})
    with pytest.raises(ValueError, match="preset id or a mapping"):
        expand_encoder_entry(3)
    with pytest.raises(UnknownKeyError, match="hf_clip"):
        build_encoder(EncoderConfig(id="x", backend="nope"), load_weights=False)


def test_config_from_mapping_uses_encoder_presets():
    cfg = config_from_mapping({"name": "t", "encoders": ["tiny-clip", {"preset": "tiny-siglip", "grid_size": 2}]})
    assert [e.id for e in cfg.encoders] == ["tiny-clip", "tiny-siglip"]
    assert cfg.encoders[1].out_grid == 2 and cfg.encoders[0].hf_config["model_type"] == "clip_vision_model"
    enc = build_encoder(cfg.encoders[1], load_weights=False)
    assert enc(_px(cfg.encoders[1], b=1)).shape == (1, 2, 2, 32)


# ---- preprocessing ----------------------------------------------------------------------------------------
def test_expand2square_offsets_and_colour():
    img = Image.new("RGB", (5, 2), (10, 20, 30))  # W=5, H=2 -> pasted at (0, (5-2)//2 = 1)
    sq = np.asarray(expand2square(img, (122, 116, 104)))
    assert sq.shape == (5, 5, 3)
    assert (sq[1:3] == (10, 20, 30)).all()
    assert (sq[[0, 3, 4]] == (122, 116, 104)).all()
    tall = np.asarray(expand2square(Image.new("RGB", (2, 5), (1, 2, 3)), (0, 0, 0)))  # x offset 1
    assert (tall[:, 1:3] == (1, 2, 3)).all() and (tall[:, [0, 3, 4]] == 0).all()
    same = Image.new("RGB", (3, 3))
    assert expand2square(same, (0, 0, 0)) is same


def test_preprocess_normalisation_by_hand():
    img = Image.new("RGB", (4, 2), (255, 0, 51))
    mean, std = (0.5, 0.25, 0.2), (0.5, 0.25, 0.1)
    px = preprocess_images([img], 4, mean, std, pad_color=(0, 64, 255))  # size 4: no resampling
    assert px.shape == (1, 3, 4, 4)
    # rows 1-2: image; rows 0 and 3: pad
    assert torch.allclose(
        px[0, :, 1, 0], torch.tensor([(1 - 0.5) / 0.5, (0 - 0.25) / 0.25, (0.2 - 0.2) / 0.1]), atol=1e-6
    )
    assert torch.allclose(px[0, :, 0, 0], torch.tensor([-1.0, (64 / 255 - 0.25) / 0.25, (1 - 0.2) / 0.1]), atol=1e-6)
    # default pad colour truncates 255 * mean
    px = preprocess_images([img], 4, mean, std)
    assert torch.allclose(
        px[0, :, 0, 0],
        torch.tensor([(127 / 255 - 0.5) / 0.5, (63 / 255 - 0.25) / 0.25, (51 / 255 - 0.2) / 0.1]),
        atol=1e-6,
    )


def test_preprocess_bicubic_resize_and_inputs(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    enc = build_encoder("tiny-siglip", load_weights=False)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    px = enc.preprocess([Image.fromarray(arr), arr, str(path), Image.fromarray(arr[..., 0])])
    assert px.shape == (4, 3, 32, 32) and px.dtype == torch.float32
    expect = expand2square(Image.fromarray(arr), (122, 116, 104)).resize((32, 32), Image.BICUBIC)
    assert torch.allclose(px[0], (torch.from_numpy(np.asarray(expect, np.float32) / 255).permute(2, 0, 1) - 0.5) / 0.5)
    assert torch.equal(px[0], px[1]) and torch.equal(px[0], px[2])
    assert enc(px).shape == (4, 4, 4, 32)
    assert enc.preprocess([]).shape == (0, 3, 32, 32)


def test_unreadable_images_name_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(missing)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        preprocess_images([bad], 8, (0.5,) * 3, (0.5,) * 3)


def test_generic_automodel_backend(tmp_path):
    vit = transformers.ViTModel(
        transformers.ViTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    vit.save_pretrained(tmp_path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = vit(pixel_values=x).last_hidden_state[:, 1:].reshape(1, 4, 4, 32)
    for backend in ("hf", "hf_auto"):
        cfg = EncoderConfig(
            id="vit", backend=backend, name_or_path=str(tmp_path), image_size=32, hidden_size=32, native_grid=4
        )
        enc = build_encoder(cfg)
        assert torch.allclose(enc(x), ref, atol=1e-6)
    # a CNN map through the generic path
    cfg = dataclasses.replace(
        get_encoder_preset("tiny-convnext"), backend="hf_auto", options={}, hidden_size=32, native_grid=2
    )
    assert build_encoder(cfg, load_weights=False)(torch.randn(1, 3, 64, 64)).shape == (1, 2, 2, 32)


def test_preset_architectures_are_json_serialisable(tmp_path):
    import json

    from cambrian.config import CambrianConfig

    encs = [get_encoder_preset(n) for n in ENCODER_PRESETS.names()]
    model, _, _ = _tiny_hf_models()["dinov2"]
    model.save_pretrained(tmp_path)
    loaded = dataclasses.replace(get_encoder_preset("tiny-dinov2"), name_or_path=str(tmp_path), hf_config=None)
    build_encoder(loaded)
    cfg = CambrianConfig(encoders=encs + [loaded])
    cfg.save(tmp_path / "config.json")
    back = CambrianConfig.load(tmp_path / "config.json")
    assert json.loads(json.dumps(back.to_dict())) == json.loads(json.dumps(cfg.to_dict()))
    rebuilt = build_encoder(dataclasses.replace(back.encoders[-1], name_or_path=None), load_weights=False)
    assert rebuilt.model.config.hidden_size == 32
