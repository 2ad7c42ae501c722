"""``--tower``, shared by every command that loads a model (info, convert, chat, serve, eval run): point a released
checkpoint's tower names at local weights or other presets (``cambrian.models.official.tower_map``)."""

from __future__ import annotations

import argparse


def add_tower_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tower",
        action="append",
        default=[],
        metavar="NAME=DIR|NAME=PRESET[@DIR]",
        help="released-format checkpoints: load the official tower NAME (e.g. 'siglip/CLIP-ViT-SO400M-14-384') from a "
        "local weights directory, or map it to another of our encoder presets (optionally with local weights); the "
        "release holds no tower weights, so without the hub this is how they are found. Repeatable",
    )


def towers_from_args(args):
    from ..models.official.tower_map import TowerMap

    return TowerMap.parse(getattr(args, "tower", None))
