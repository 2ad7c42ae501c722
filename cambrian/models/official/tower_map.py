"""``--tower NAME=...``: point a released model's tower names at other encoder presets or at local weights.

A release holds no tower weights: the official loader (and ours) takes them from the towers' hub ids. Where the hub
is out of reach, or a tower should come from elsewhere, each official tower name can be mapped, the same way for
``load``, ``info``, ``convert``, ``chat``, ``serve`` and ``eval``:

- ``NAME=DIR``: the table's preset for NAME, its weights read from the local directory DIR;
- ``NAME=PRESET``: another of our encoder presets (its own weights source);
- ``NAME=PRESET@DIR``: both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ReleaseFormatError

FLAG = "--tower"


@dataclass(frozen=True)
class TowerMap:
    presets: dict[str, str] = field(default_factory=dict)  # official tower name -> our encoder preset
    dirs: dict[str, str] = field(default_factory=dict)  # official tower name -> local weights directory

    def __bool__(self) -> bool:
        return bool(self.presets or self.dirs)

    @classmethod
    def parse(cls, items: Sequence[str] | None) -> TowerMap:
        from ...presets.encoders import ENCODER_PRESETS

        presets, dirs = {}, {}
        for item in items or []:
            name, eq, rest = str(item).partition("=")
            if not eq or not name or not rest:
                raise ReleaseFormatError(f"{FLAG} expects NAME=DIR, NAME=PRESET or NAME=PRESET@DIR, got {item!r}")
            if name in presets or name in dirs:
                raise ReleaseFormatError(f"{FLAG} {name}: given twice")
            preset, at, d = rest.partition("@")
            if not at and Path(rest).is_dir():
                preset, d = "", rest
            if d:
                if not Path(d).is_dir():
                    raise ReleaseFormatError(f"{FLAG} {name}: weights directory {d!r} not found")
                dirs[name] = d
            if preset:
                if preset not in ENCODER_PRESETS:
                    raise ReleaseFormatError(
                        f"{FLAG} {name}: {preset!r} is neither a directory nor an encoder preset "
                        f"(presets: {', '.join(ENCODER_PRESETS.names())})"
                    )
                presets[name] = preset
        return cls(presets, dirs)
