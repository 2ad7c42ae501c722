"""Typed configuration of a Cambrian model: vision encoders + connector + LLM.

A ``CambrianConfig`` is saved as ``config.json`` next to every checkpoint and is enough to rebuild the
architecture without any network access (architectures of HF towers/LLMs are embedded as ``hf_config``
dicts once known). Model presets live in ``cambrian/presets/models/<name>.yaml`` (``cambrian.presets.models``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from .typed import Bool, Choice, ConfigError, Int, Mapping, Num, OptInt, OptStr, Str, build, typed_config

RGB = tuple[Num(), Num(), Num()]

# Counts that decide how many modules a model builds (layers, experts, SVA stacks). Real checkpoints stay far below
# (Llama-3.1-405B: 126 layers; Cambrian-1: 3 SVA layers, 10 in-LLM stacks); a config above is refused before anything
# is built, so a 2 KB config.json cannot make ``info`` or the memory guard build 10^7 layers, even on the meta device.
MAX_LAYERS = 512
MAX_EXPERTS = 1024
MAX_CONNECTOR_DEPTH = 64
MAX_QUERY_GROUPS = 64
_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "n_shared_experts")


def architecture_counts_problem(d: dict, where: str = "", depth: int = 0) -> str | None:
    """The first layer / expert count of an architecture dict (HF ``config.to_dict()``, nested sub-configs included)
    above the limits, as a phrase; None when all are within them."""
    if depth > 4:
        return f"{where or 'hf_config'} nests deeper than any model config"
    for k, v in d.items():
        name = f"{where}.{k}" if where else k
        if isinstance(v, dict):
            problem = architecture_counts_problem(v, name, depth + 1)
            if problem:
                return problem
            continue
        limit = MAX_LAYERS if k in _LAYER_KEYS else MAX_EXPERTS if k in _EXPERT_KEYS else None
        if k == "depths" and isinstance(v, list):  # ConvNeXt / Swin stages
            if len(v) > MAX_LAYERS or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                return f"{name} must be a short list of whole numbers"
            v, limit = sum(v), MAX_LAYERS
        if limit is None or v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
            return f"{name} must be a whole number from 0 to {limit}, got {v!r}"
    return None


def _architecture(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"must be a mapping (an HF config.to_dict()) or null, got {type(v).__name__}")
    problem = architecture_counts_problem(v)
    if problem:
        raise ValueError(problem)
    return v


Architecture = Annotated[dict | None, BeforeValidator(_architecture)]
PositiveRGB = tuple[Num(gt=0), Num(gt=0), Num(gt=0)]
Colour = tuple[Int(ge=0, le=255), Int(ge=0, le=255), Int(ge=0, le=255)]


@typed_config
class EncoderConfig:
    """One vision tower. ``id`` is a preset id (``cambrian.presets.encoders``) or a free name.

    Output of every tower is a spatial grid ``[B, grid_size, grid_size, hidden_size]``.
    """

    id: Str
    backend: Str = (
        "hf"  # registry key in cambrian.models.encoders (hf, timm, open_clip, efficientnet_lite0, dinov2_onnx, ...)
    )
    name_or_path: OptStr = None  # hub id or local dir of the pretrained weights (None: random init / packaged asset)
    image_size: Int(ge=1) = 224  # square input side after letterbox + resize
    hidden_size: Int(ge=1) = 768  # channels C of the output grid
    native_grid: Int(ge=1) = 14  # grid side the tower produces at image_size
    grid_size: OptInt(ge=1) = None  # resize the grid to this side (bilinear, fp32); None keeps native_grid
    select_layer: OptInt() = None  # hidden_states index (e.g. -2); None: the tower's final output
    drop_cls: Bool = True
    frozen: Bool = True
    image_mean: RGB = (0.5, 0.5, 0.5)
    image_std: PositiveRGB = (0.5, 0.5, 0.5)
    pad_color: Colour | None = None  # letterbox colour; None: int(255 * image_mean)
    hf_config: Architecture = None  # architecture dict (HF config.to_dict()) to build without the hub
    options: Mapping = field(default_factory=dict)  # backend-specific extras (e.g. multi-stage fusion)

    @property
    def out_grid(self) -> int:
        return self.grid_size or self.native_grid

    @property
    def token_len(self) -> int:
        return self.out_grid**2


@typed_config
class ConnectorConfig:
    """Vision -> LLM connector. ``type`` is a registry key in ``cambrian.models.connectors``."""

    type: Str = "sva"  # sva | mlp2x_gelu | mlpNx_gelu | linear | identity | concat | interleave
    hidden_size: Int(ge=1) = 1024  # SVA d (official ``vision_hidden_size``)
    image_token_len: Int(ge=1) = 576  # L_final**2 visual tokens per square image (before newline tokens)
    query_num_list: Annotated[list[Int(ge=1)], Field(min_length=1, max_length=MAX_QUERY_GROUPS)] = field(
        default_factory=lambda: [576]
    )  # per query group Q_g (G = len)
    depth: Int(ge=0, le=MAX_CONNECTOR_DEPTH) = 3  # SVA layers in the pre-LLM aggregator (``connector_depth``)
    num_heads: Int(ge=1) = 16  # hard-coded to 16 in the official SVA
    # SVA re-applied inside the LLM after layers start + t*stride, t < num_llm_layers (``connector_only`` = 0 layers)
    num_llm_layers: Int(ge=0, le=MAX_LAYERS) = 0
    llm_start: Int(ge=0, le=MAX_LAYERS) = 0
    llm_stride: Int(ge=1, le=MAX_LAYERS) = 1
    newline: Bool = True  # learned newline embedding after each grid row
    unpad: Bool = True  # drop letterbox rows/cols of the token grid (docs/official-code.md#letterbox)
    options: Mapping = field(default_factory=dict)

    @property
    def grid(self) -> int:
        side = int(round(self.image_token_len**0.5))
        if side * side != self.image_token_len:
            raise ConfigError(f"connector.image_token_len={self.image_token_len} is not a square number")
        return side


@typed_config
class LLMConfig:
    """The causal LM. ``backend``: ``hf`` (hub id or local dir), ``gguf`` (a GGUF file, e.g. the packaged
    SmolLM2), ``random`` (built from ``hf_config`` with random weights: tests and meta-device counting)."""

    backend: Str = "hf"
    name_or_path: OptStr = None
    gguf_file: OptStr = None
    hf_config: Architecture = None  # architecture (HF config.to_dict())
    template: Str = "llama_3"  # chat template id (cambrian.models.llm.templates)
    system_prompt: str | None = None  # None: the template's official system prompt
    max_length: Int(ge=1) = 2048
    tokenizer: OptStr = None  # tokenizer dir/id when it differs from name_or_path
    options: Mapping = field(default_factory=dict)


@typed_config
class CambrianConfig:
    name: Str = "custom"
    encoders: list[EncoderConfig] = field(default_factory=list)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    dtype: Choice("float32", "bfloat16", "float16") = "float32"
    format_version: Int(ge=1) = 1

    def __post_init__(self):
        c = self.connector
        layers = (self.llm.hf_config or {}).get("num_hidden_layers")
        last = c.llm_start + (c.num_llm_layers - 1) * c.llm_stride
        if c.num_llm_layers and isinstance(layers, int) and last >= layers:
            raise ValueError(
                f"connector: in-LLM SVA after LLM layers {c.llm_start}, {c.llm_start + c.llm_stride}, ... {last} "
                f"(num_llm_layers {c.num_llm_layers}) but the LLM has {layers} layers"
            )

    # ---- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> CambrianConfig:
        """Every field typed and range-checked at any depth (``encoders[0].image_size``); unknown keys refused with
        a did-you-mean (``cambrian.typed``)."""
        return build(cls, d, where)

    def save(self, path: str | Path) -> None:
        from .utils.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CambrianConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        from .typed import read_mapping

        return cls.from_dict(read_mapping(path), str(path))
