"""Typed configuration of a Cambrian model: vision encoders + connector + LLM.

A ``CambrianConfig`` is saved as ``config.json`` next to every checkpoint and is enough to rebuild the
architecture without any network access (architectures of HF towers/LLMs are embedded as ``hf_config``
dicts once known). Model presets live in ``cambrian/presets/models/<name>.yaml`` (``cambrian.presets.models``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml



@dataclass
class EncoderConfig:
    """One vision tower. ``id`` is a preset id (``cambrian.presets.encoders``) or a free name.

    Output of every tower is a spatial grid ``[B, grid_size, grid_size, hidden_size]``.
    """

    id: str
    backend: str = "hf"  # registry key in cambrian.models.encoders (hf, timm, open_clip, efficientnet_lite0, dinov2_onnx, ...)
    name_or_path: str | None = None  # hub id or local dir of the pretrained weights (None: random init / packaged asset)
    image_size: int = 224  # square input side after letterbox + resize
    hidden_size: int = 768  # channels C of the output grid
    native_grid: int = 14  # grid side the tower produces at image_size
    grid_size: int | None = None  # resize the grid to this side (bilinear, fp32); None keeps native_grid
    select_layer: int | None = None  # hidden_states index (e.g. -2); None: the tower's final output
    drop_cls: bool = True
    frozen: bool = True
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pad_color: tuple[int, int, int] | None = None  # letterbox colour; None: int(255 * image_mean)
    hf_config: dict | None = None  # architecture dict (HF config.to_dict()) to build without the hub
    options: dict = field(default_factory=dict)  # backend-specific extras (e.g. multi-stage fusion)

    @property
    def out_grid(self) -> int:
        return self.grid_size or self.native_grid

    @property
    def token_len(self) -> int:
        return self.out_grid**2


@dataclass
class ConnectorConfig:
    """Vision -> LLM connector. ``type`` is a registry key in ``cambrian.models.connectors``."""

    type: str = "sva"  # sva | mlp2x_gelu | mlpNx_gelu | linear | identity | concat | interleave
    hidden_size: int = 1024  # SVA d (official ``vision_hidden_size``)
    image_token_len: int = 576  # L_final**2 visual tokens per square image (before newline tokens)
    query_num_list: list[int] = field(default_factory=lambda: [576])  # per query group Q_g (G = len)
    depth: int = 3  # SVA layers in the pre-LLM aggregator (``connector_depth``)
    num_heads: int = 16  # hard-coded to 16 in the official SVA
    # SVA re-applied inside the LLM after layers start + t*stride, t < num_llm_layers (``connector_only`` = 0 layers)
    num_llm_layers: int = 0
    llm_start: int = 0
    llm_stride: int = 1
    newline: bool = True  # learned newline embedding after each grid row
    unpad: bool = True  # drop letterbox rows/cols of the token grid (spec §1.5)
    options: dict = field(default_factory=dict)

    @property
    def grid(self) -> int:
        side = int(round(self.image_token_len**0.5))
        if side * side != self.image_token_len:
            raise ValueError(f"connector.image_token_len={self.image_token_len} is not a square number")
        return side


@dataclass
class LLMConfig:
    """The causal LM. ``backend``: ``hf`` (hub id or local dir), ``gguf`` (a GGUF file, e.g. the packaged
    SmolLM2), ``random`` (built from ``hf_config`` with random weights: tests and meta-device counting)."""

    backend: str = "hf"
    name_or_path: str | None = None
    gguf_file: str | None = None
    hf_config: dict | None = None  # architecture (HF config.to_dict())
    template: str = "llama_3"  # chat template id (cambrian.models.llm.templates)
    system_prompt: str | None = None  # None: the template's official system prompt
    max_length: int = 2048
    tokenizer: str | None = None  # tokenizer dir/id when it differs from name_or_path
    options: dict = field(default_factory=dict)


@dataclass
class CambrianConfig:
    name: str = "custom"
    encoders: list[EncoderConfig] = field(default_factory=list)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    dtype: str = "float32"
    format_version: int = 1

    # ---- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CambrianConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown CambrianConfig keys: {sorted(unknown)}")
        encs = [_build(EncoderConfig, e, f"encoders[{i}]") for i, e in enumerate(d.pop("encoders", []))]
        conn = _build(ConnectorConfig, d.pop("connector", {}), "connector")
        llm = _build(LLMConfig, d.pop("llm", {}), "llm")
        return cls(encoders=encs, connector=conn, llm=llm, **d)

    def save(self, path: str | Path) -> None:
        from .utils.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CambrianConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at top level")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def _build(kind, data: Any, where: str):
    if isinstance(data, kind):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (valid: {sorted(names)})")
    data = {k: (tuple(v) if isinstance(v, list) and k in ("image_mean", "image_std", "pad_color") else v) for k, v in data.items()}
    return kind(**data)
