"""Non-SVA projectors (docs/official-code.md#projectors) and the connectors built on them.

``build_projector(type, in_dim, out_dim)``:

* ``linear``: ``Linear(in, D)``;
* ``mlp{N}x_gelu`` (regex ``^mlp(\\d+)x_gelu$``, N >= 1): ``Linear(in, D)`` then (N-1)×[GELU, ``Linear(D, D)``],
  so ``mlp2x_gelu`` is ``Sequential(Linear, GELU, Linear)`` (state-dict keys ``mm_projector.0``, ``mm_projector.2``);
* ``identity``: no parameters; needs ``in == D``.

The connectors ``linear`` / ``mlpNx_gelu`` / ``identity`` concatenate the encoders' channels (``mm_hidden_size =
sum C_k``) exactly like the reference, which requires every encoder to output the connector's L×L grid
(``image_token_len`` tokens); a clear error says so otherwise (the ``concat`` connector interpolates instead).
Every connector here owns ``image_newline`` and builds its blocks with the same unpad + newline code as SVA
(``geometry.assemble_blocks``).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from ...config import ConnectorConfig
from ...typed import ConfigError
from .base import CONNECTORS, Connector, VisualTokens
from .geometry import assemble_blocks, resize_grid

__all__ = ["build_projector", "GridConnector", "LinearConnector", "MLPGeluConnector", "IdentityConnector"]

_MLP_RE = re.compile(r"^mlp(\d+)x_gelu$")


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A reference projector module by type name (``linear``, ``mlp{N}x_gelu``, ``identity``)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "identity":
        if in_dim != out_dim:
            raise ConfigError(f"identity projector needs encoder channels ({in_dim}) == LLM hidden size ({out_dim})")
        return nn.Identity()
    m = _MLP_RE.match(kind)
    if m:
        depth = int(m.group(1))
        if depth < 1:
            raise ConfigError(f"projector {kind!r}: depth must be >= 1")
        mods: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            mods += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        return nn.Sequential(*mods)
    raise ConfigError(f"unknown projector type {kind!r}; valid: linear, identity, mlp<N>x_gelu (e.g. mlp2x_gelu)")


class GridConnector(Connector):
    """Base of the non-SVA connectors: checks inputs, owns ``image_newline``, turns a ``[N, L, L, (K,) D]`` token
    grid into blocks with the shared unpad/newline code. Subclasses implement ``tokens(features) -> grid``."""

    resize_encoders = False  # True: bilinear-resize every encoder grid to L×L first; False: require s_k == L

    def __init__(self, config: ConnectorConfig, encoder_dims, encoder_grids, llm_hidden: int):
        super().__init__(config, encoder_dims, encoder_grids, llm_hidden)
        if len(self.encoder_dims) == 0 or len(self.encoder_dims) != len(self.encoder_grids):
            raise ConfigError(
                f"connector needs one (dim, grid) per encoder, got dims {self.encoder_dims} grids {self.encoder_grids}"
            )
        if config.num_llm_layers:
            raise ConfigError(f"connector type {config.type!r} has no in-LLM layers; set connector.num_llm_layers = 0")
        self.final_side = config.grid
        if not self.resize_encoders:
            bad = [(k, s) for k, s in enumerate(self.encoder_grids) if s != self.final_side]
            if bad:
                raise ConfigError(
                    f"connector {config.type!r} concatenates encoder tokens and needs every encoder on the connector grid "
                    f"{self.final_side}x{self.final_side} (image_token_len={config.image_token_len}); encoder grids "
                    f"{self.encoder_grids} differ at {bad}. Set the encoders' grid_size, or use connector type 'concat' "
                    f"(interpolates every encoder to the common grid)."
                )
        self.image_newline = nn.Parameter(torch.randn(llm_hidden) / math.sqrt(llm_hidden))

    def _param_dtype(self) -> torch.dtype:
        return self.image_newline.dtype

    def _grids(self, features) -> list[torch.Tensor]:
        """Encoder grids on the connector's L×L grid, in the parameter dtype."""
        dtype = self._param_dtype()
        return [resize_grid(f, self.final_side).to(dtype) for f in features]

    def tokens(self, features: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features, image_sizes) -> VisualTokens:
        n = self._check_inputs(features, image_sizes)
        image_sizes = [tuple(int(v) for v in s) for s in image_sizes]
        if n == 0:
            return VisualTokens(blocks=[], grids=[], state=None)
        grid = self.tokens(features)
        newline = self.image_newline if self.config.newline else None
        blocks, grids = assemble_blocks(grid, image_sizes, newline, self.config.unpad)
        return VisualTokens(blocks=blocks, grids=grids, state=None)


class _ChannelConcatConnector(GridConnector):
    """Concatenate the encoders' channels cell by cell, then one projector: ``[N, L, L, sum C_k] -> [N, L, L, D]``."""

    projector_type = "linear"

    def __init__(self, config, encoder_dims, encoder_grids, llm_hidden):
        super().__init__(config, encoder_dims, encoder_grids, llm_hidden)
        self.mm_projector = build_projector(self._projector_type(), sum(self.encoder_dims), llm_hidden)

    def _projector_type(self) -> str:
        return self.projector_type

    def tokens(self, features):
        return self.mm_projector(torch.cat(self._grids(features), dim=-1))


@CONNECTORS.register("linear")
class LinearConnector(_ChannelConcatConnector):
    projector_type = "linear"


@CONNECTORS.register("mlpNx_gelu")
class MLPGeluConnector(_ChannelConcatConnector):
    """``mlp{N}x_gelu``; N is read from ``config.type`` (e.g. ``mlp2x_gelu``)."""

    def _projector_type(self) -> str:
        if not _MLP_RE.match(self.config.type):
            raise ConfigError(f"connector type {self.config.type!r} does not match mlp<N>x_gelu")
        return self.config.type


@CONNECTORS.register("identity")
class IdentityConnector(_ChannelConcatConnector):
    projector_type = "identity"
