"""``interleave``: MMVP's Interleaved Mixture-of-Features.

Each encoder k is resized (bilinear, fp32, ``align_corners=False``) to the connector's L×L grid and projected to
the LLM width by its own projector ``mm_projectors.{k}`` (``config.options["projector"]``, default ``mlp2x_gelu``).
The K projected grids are interleaved spatially: grid cell (u, v) emits K consecutive tokens, encoder 0 first.

Token layout of one image block (valid grid h'×w' after unpad, K encoders, newline on)::

    row u:  [c(u,0)_0 .. c(u,0)_{K-1}] [c(u,1)_0 .. c(u,1)_{K-1}] ... [c(u,w'-1)_0 .. c(u,w'-1)_{K-1}] <newline>

so a block has ``h' * (K*w' + 1)`` tokens; the newline comes once per grid row, after the row's K*w' tokens
(never between the K tokens of a cell). ``VisualTokens.grids[i]`` is the token layout ``(h', K*w')``, which keeps
``n_i = h' * (w + 1)`` for ``(h', w) = grids[i]``. Unpadding crops whole cells, as for every connector.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import CONNECTORS
from .geometry import valid_region
from .mlp import GridConnector, build_projector

__all__ = ["InterleaveConnector"]


@CONNECTORS.register("interleave")
class InterleaveConnector(GridConnector):
    resize_encoders = True

    def __init__(self, config, encoder_dims, encoder_grids, llm_hidden):
        super().__init__(config, encoder_dims, encoder_grids, llm_hidden)
        kind = str(config.options.get("projector", "mlp2x_gelu"))
        self.mm_projectors = nn.ModuleList(build_projector(kind, c, llm_hidden) for c in self.encoder_dims)

    def num_tokens(self, image_size: tuple[int, int]) -> int:
        """LLM positions of one image: ``h' * (K*w' + 1)`` with newline, ``h' * K*w'`` without."""
        side = self.final_side
        top, bottom, left, right = (
            valid_region(image_size[0], image_size[1], side) if self.config.unpad else (0, side, 0, side)
        )
        h, w = bottom - top, (right - left) * len(self.encoder_dims)
        return h * (w + 1) if self.config.newline else h * w

    def tokens(self, features):
        grids = self._grids(features)
        return torch.stack([proj(g) for proj, g in zip(self.mm_projectors, grids)], dim=3)  # [N, L, L, K, D]
