"""The released Cambrian-1 checkpoint format (``nyu-visionx/cambrian-8b``, ``-13b``, ``-34b``, ``cambrian-phi3-3b``).

- ``config``: the official ``config.json`` <-> our ``CambrianConfig`` (tower table, model families, templates);
- ``weights``: official tensor names <-> ours (strict), sharded safetensors / ``.bin`` reading, sharded writing;
- ``loader``: ``load_release`` (what ``CambrianModel.from_pretrained`` / ``load`` dispatch to for such a directory or
  hub id) and ``save_release`` (what ``cambrian convert --to official`` writes).

Everything here reads only JSON, safetensors and ``weights_only`` tensor files.
"""

from .config import (
    FAMILIES,
    OFFICIAL_TOWERS,
    Family,
    OfficialTower,
    ReleaseFormatError,
    config_to_official,
    detect_template,
    is_official_config,
    official_to_config,
)
from .loader import (
    image_position,
    is_release_dir,
    load_release,
    read_config,
    release_config,
    resolve_release,
    save_release,
)
from .weights import official_to_ours, ours_to_official

__all__ = [
    "FAMILIES",
    "OFFICIAL_TOWERS",
    "Family",
    "OfficialTower",
    "ReleaseFormatError",
    "config_to_official",
    "detect_template",
    "image_position",
    "is_official_config",
    "is_release_dir",
    "load_release",
    "official_to_config",
    "official_to_ours",
    "ours_to_official",
    "read_config",
    "release_config",
    "resolve_release",
    "save_release",
]
