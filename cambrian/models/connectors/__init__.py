"""Vision -> LLM connectors: ``build_connector(cfg, encoder_dims, encoder_grids, llm_hidden)``.

Registered types: ``sva`` (Cambrian-1 Spatial Vision Aggregator), ``linear``, ``mlp<N>x_gelu``, ``identity``
(reference projectors on channel-concatenated encoders), ``concat`` (interpolate every encoder to L×L, concat,
MLP) and ``interleave`` (MMVP Interleaved-MoF). See ``base.py`` for the contract.
"""

from . import _all  # noqa: F401  (registers every connector type)
from .base import CONNECTORS, Connector, ImageSpan, VisualTokens, build_connector

__all__ = ["CONNECTORS", "Connector", "ImageSpan", "VisualTokens", "build_connector"]
