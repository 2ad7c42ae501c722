"""Typed configuration of a Cambrian model: vision encoders + connector + LLM.

A ``CambrianConfig`` is saved as ``config.json`` next to every checkpoint and is enough to rebuild the
architecture without any network access (architectures of HF towers/LLMs are embedded as ``hf_config``
dicts once known). Model presets live in ``cambrian/presets/models/<name>.yaml`` (``cambrian.presets.models``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path

from .typed import Bool, Choice, ConfigError, Int, Mapping, Num, OptInt, OptStr, Str, build, typed_config

RGB = tuple[Num(), Num(), Num()]
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
    hf_config: dict | None = None  # architecture dict (HF config.to_dict()) to build without the hub
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
    query_num_list: list[Int(ge=1)] = field(default_factory=lambda: [576])  # per query group Q_g (G = len)
    depth: Int(ge=0) = 3  # SVA layers in the pre-LLM aggregator (``connector_depth``)
    num_heads: Int(ge=1) = 16  # hard-coded to 16 in the official SVA
    # SVA re-applied inside the LLM after layers start + t*stride, t < num_llm_layers (``connector_only`` = 0 layers)
    num_llm_layers: Int(ge=0) = 0
    llm_start: Int(ge=0) = 0
    llm_stride: Int(ge=1) = 1
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
    hf_config: dict | None = None  # architecture (HF config.to_dict())
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
