"""Import the official Cambrian-1 package from a checkout, its tower factory replaced by identity towers.

The official ``cambrian.model.multimodal_encoder.builder`` imports every tower backend it supports (open_clip,
diffusers, timm, ...) at import time; a release holds no tower weights, and the parity fixtures feed tower outputs
directly, so that one module is replaced. Every other module that runs is the official code.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from torch import nn


class IdentityTower(nn.Module):
    """A tower whose output is its input: the fixture passes each tower's ``[B, N, C]`` grid as its "image"."""

    def __init__(self, name: str, hidden_size: int):
        super().__init__()
        self.name, self.hidden_size, self.is_loaded = name, hidden_size, True

    def forward(self, x):
        return x


def use_official_code(checkout: Path, hidden_sizes: dict[str, int] | None = None) -> None:
    """Put the official checkout first on ``sys.path`` and replace its tower factory (``hidden_sizes``: official
    tower name -> width of its output; towers built for configs only need none)."""
    sys.path.insert(0, str(Path(checkout).resolve()))
    widths = dict(hidden_sizes or {})
    mod = types.ModuleType("cambrian.model.multimodal_encoder.builder")

    def build_vision_tower_aux_list(cfg, **kwargs):
        names = getattr(cfg, "mm_vision_tower_aux_list", None) or cfg.vision_tower_aux_list
        return [IdentityTower(n, widths.get(n, 1)) for n in names]

    mod.build_vision_tower_aux_list = build_vision_tower_aux_list
    sys.modules[mod.__name__] = mod
