"""The connector interface: per-encoder feature grids in, per-image blocks of LLM-space tokens out.

A connector owns every vision->LLM parameter: projectors, SVA samplers (pre-LLM and in-LLM), queries and
the learned newline embedding. The model only splices ``VisualTokens.blocks`` into the text sequence and,
for connectors with ``in_llm_layers``, calls ``apply_in_llm`` after those LLM decoder layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ...config import ConnectorConfig
from ...registry import Registry


@dataclass
class VisualTokens:
    blocks: list[torch.Tensor]  # per image: [n_i, D] tokens (newline embeddings included), ready to splice
    grids: list[tuple[int, int]]  # per image: valid grid (h', w'); n_i = h' * (w' + 1) with newline, else h' * w'
    state: Any = None  # connector-specific data for apply_in_llm (SVA: windows, masks, global context)


@dataclass
class ImageSpan:
    """Where image ``image`` (index into VisualTokens.blocks) sits in the LLM sequence of batch row ``row``."""

    row: int
    start: int
    image: int


class Connector(nn.Module):
    """Subclasses are registered in ``CONNECTORS`` and built as ``cls(config, encoder_dims, encoder_grids, llm_hidden)``.

    ``encoder_dims[k]`` / ``encoder_grids[k]``: channels C_k and grid side s_k of encoder k's output.
    """

    def __init__(
        self, config: ConnectorConfig, encoder_dims: Sequence[int], encoder_grids: Sequence[int], llm_hidden: int
    ):
        super().__init__()
        self.config = config
        self.encoder_dims = list(encoder_dims)
        self.encoder_grids = list(encoder_grids)
        self.llm_hidden = llm_hidden

    def forward(self, features: list[torch.Tensor], image_sizes: Sequence[tuple[int, int]]) -> VisualTokens:
        """``features[k]``: ``[N, s_k, s_k, C_k]`` for the N images of the batch (all samples flattened);
        ``image_sizes``: original (W, H) of each image, for letterbox masks and unpadding."""
        raise NotImplementedError

    def _check_inputs(self, features, image_sizes) -> int:
        """Validate ``features`` against the encoder dims/grids the connector was built for; returns N."""
        if len(features) != len(self.encoder_dims):
            raise ValueError(f"connector built for {len(self.encoder_dims)} encoders, got {len(features)} feature maps")
        n = features[0].shape[0]
        for k, (f, c, s) in enumerate(zip(features, self.encoder_dims, self.encoder_grids)):
            if tuple(f.shape) != (n, s, s, c):
                raise ValueError(f"features[{k}] has shape {tuple(f.shape)}, expected [N={n}, {s}, {s}, {c}]")
        if len(image_sizes) != n:
            raise ValueError(f"{len(image_sizes)} image sizes for {n} images")
        return n

    def num_tokens(self, image_size: tuple[int, int]) -> int:
        """LLM positions one image of original size (W, H) occupies (valid grid + newline column)."""
        from .geometry import valid_region

        side = self.config.grid
        top, bottom, left, right = (
            valid_region(image_size[0], image_size[1], side) if self.config.unpad else (0, side, 0, side)
        )
        h, w = bottom - top, right - left
        return h * (w + 1) if self.config.newline else h * w

    @property
    def in_llm_layers(self) -> list[int]:
        """LLM decoder-layer indices after which ``apply_in_llm`` runs (empty: none)."""
        return []

    def sva_parameters(self) -> list[nn.Parameter]:
        """The parameters of the connector's SVA (spatial vision aggregation) modules, trained with ``sva_lr``;
        the rest of the connector is the ``projector`` group. None by default."""
        return []

    def apply_in_llm(
        self, layer_idx: int, hidden: torch.Tensor, spans: Sequence[ImageSpan], state: Any
    ) -> torch.Tensor:
        """Return ``hidden`` ``[B, T, D]`` with the image blocks at ``spans`` re-aggregated (SVA only)."""
        return hidden


CONNECTORS: Registry[type[Connector]] = Registry("connector")


def build_connector(config: ConnectorConfig, encoder_dims, encoder_grids, llm_hidden: int) -> Connector:
    from ..buildable import architecture_errors
    from . import _all  # noqa: F401  (registers every connector)

    cls = CONNECTORS.get(_registry_key(config.type))
    with architecture_errors(f"connector ({config.type})"):
        return cls(config, encoder_dims, encoder_grids, llm_hidden)


def _registry_key(type_: str) -> str:
    import re

    return "mlpNx_gelu" if re.fullmatch(r"mlp\d+x_gelu", type_) else type_
