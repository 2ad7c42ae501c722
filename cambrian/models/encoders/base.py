"""The vision-encoder interface: PIL images in, a spatial feature grid ``[B, h, w, C]`` out.

Every backend (HF transformers, timm, open_clip, the packaged EfficientNet-Lite0 / DINOv2-S) subclasses
``VisionEncoder`` and implements ``_forward_grid``; preprocessing (letterbox pad-to-square with the tower's
own mean colour, then resize, then normalise; docs/official-code.md#towers), layer selection, CLS dropping, grid resizing
and freezing are shared here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import EncoderConfig
from ...registry import Registry
from .preprocess import preprocess_images

# backend name (``EncoderConfig.backend``) -> ``factory(cfg, load_weights) -> VisionEncoder``
ENCODER_BACKENDS: Registry = Registry("encoder backend")


class VisionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config

    # ---- static properties (known without loading weights) ------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def grid_size(self) -> int:
        """Side of the output grid (after the optional resize)."""
        return self.config.out_grid

    @property
    def frozen(self) -> bool:
        """No parameter of the tower trains (``requires_grad``): it then runs without autograd and stays in eval
        mode. ``config.frozen`` is what the tower was built with (and what a saved model records)."""
        return not any(p.requires_grad for p in self.parameters())

    def freeze(self, frozen: bool = True) -> VisionEncoder:
        self.config.frozen = frozen
        self.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> VisionEncoder:
        """A frozen tower stays in eval mode (BatchNorm statistics, dropout) even inside a model in train mode."""
        super().train(mode)
        if self.frozen:
            for child in self.children():
                child.eval()
        return self

    @property
    def param_dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32

    # ---- preprocessing -------------------------------------------------------------------------------
    def preprocess(self, images: Sequence) -> torch.Tensor:
        """PIL images (any size/mode) -> normalised ``[B, 3, R, R]`` float32 tensor."""
        c = self.config
        return preprocess_images(images, c.image_size, c.image_mean, c.image_std, c.pad_color)

    # ---- forward ---------------------------------------------------------------------------------------
    @abstractmethod
    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Backend forward: ``[B, 3, R, R]`` -> ``[B, h, w, C]`` at the native grid (CLS already dropped,
        ``select_layer`` already applied)."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            grid = self._forward_grid(pixel_values)
        target = self.config.grid_size
        if target is not None and (grid.shape[1] != target or grid.shape[2] != target):
            grid = resize_grid(grid, target)
        return grid


def resize_grid(grid: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize of a ``[B, h, w, C]`` grid to ``side x side``, computed in fp32 with
    align_corners=False and cast back (the official towers' ``interpolate``)."""
    dtype = grid.dtype
    x = grid.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).to(dtype)


def tokens_to_grid(tokens: torch.Tensor, drop_cls: bool, num_prefix: int = 1) -> torch.Tensor:
    """``[B, N(+prefix), C]`` token sequence -> ``[B, s, s, C]`` (row-major), dropping prefix tokens."""
    if drop_cls and num_prefix:
        tokens = tokens[:, num_prefix:]
    b, n, c = tokens.shape
    s = int(round(n**0.5))
    if s * s != n:
        raise ValueError(f"cannot arrange {n} tokens into a square grid (prefix tokens not dropped?)")
    return tokens.reshape(b, s, s, c)
