"""Model presets (``cambrian/presets/models/<name>.yaml``) and training recipes (``cambrian/presets/recipes``).

A model preset lists its encoders as encoder-preset ids (or ``{preset: id, field: override}`` mappings); they are
expanded through :mod:`cambrian.presets.encoders`. ``resolve_model_config`` is what every ``--model`` argument
accepts: a preset name, a checkpoint directory with ``config.json``, or a YAML/JSON config file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import CambrianConfig
from ..typed import ConfigError, read_mapping
from .encoders import expand_encoder_entry

PRESET_DIR = Path(__file__).resolve().parent / "models"
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path | None:
    """The shipped recipe called ``name`` (``tiny``, ``nano-stage1``, ``cambrian-8b-stage2``, ...), else None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    p = RECIPE_DIR / f"{name.removesuffix('.yaml')}.yaml"
    return p if p.is_file() else None


def load_preset(name: str) -> CambrianConfig:
    """The model preset ``name``; an unknown name lists the valid ones."""
    path = PRESET_DIR / f"{name}.yaml"
    if "/" in name or not path.is_file():
        from ..registry import UnknownKeyError

        raise UnknownKeyError(f"unknown model preset {name!r}; valid presets: {', '.join(list_presets())}")
    return config_from_mapping(read_mapping(path), where=str(path))


def config_from_mapping(data: dict, where: str = "config") -> CambrianConfig:
    """A model-config mapping whose encoder entries may be preset ids -> ``CambrianConfig`` (errors name ``where``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    data = dict(data)
    encs = data.get("encoders", [])
    if not isinstance(encs, list):
        raise ConfigError(f"{where}: encoders must be a list of preset ids or mappings")
    try:
        data["encoders"] = [dataclasses.asdict(expand_encoder_entry(e)) for e in encs]
        return CambrianConfig.from_dict(data)
    except (TypeError, ValueError) as e:  # an unknown preset id stays a KeyError listing the valid ids
        raise ConfigError(f"{where}: {e}") from None


def resolve_model_config(preset_or_dir: str) -> CambrianConfig:
    """A preset name, a checkpoint directory (with config.json), or a YAML/JSON file."""
    p = Path(preset_or_dir)
    if p.is_dir() and (p / "config.json").exists():
        return CambrianConfig.load(p / "config.json")
    if p.exists() and not p.is_dir():
        return config_from_mapping(read_mapping(p), where=str(p))
    return load_preset(preset_or_dir)
