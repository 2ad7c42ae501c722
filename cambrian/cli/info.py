"""``cambrian info PRESET_OR_DIR``: parameter counts per component and visual tokens, without loading weights.

For a released-format directory (``nyu-visionx/cambrian-8b`` downloaded, or written by ``cambrian convert --to
official``) it also prints how its config maps onto ours: towers -> presets, connector, template, and the official
``image_position`` next to the one our template and its tokenizer compute."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .tower_flag import add_tower_argument, towers_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="model preset name (configs/models/*.yaml), checkpoint directory (ours or released "
        "format), released-format hub id (online), or YAML/JSON config file",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_tower_argument(p)
    p.add_argument("--template", default=None, help="released format: chat template when it cannot be detected")


def _release_info(path: str, towers, template: str | None) -> dict:
    from ..models.llm.loader import load_tokenizer
    from ..models.official import image_position, read_config, release_config
    from ..models.official.config import mapping_rows

    raw = read_config(path)
    cfg = release_config(path, towers=towers.presets, template=template, tower_weights=towers.dirs)
    tok = load_tokenizer(path, required=False)
    return {
        "config": cfg,
        "model_type": raw.get("model_type"),
        "towers": mapping_rows(cfg),
        "image_position": raw.get("image_position"),
        "image_position_ours": image_position(cfg.llm.template, tok),
    }


def _fmt(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n:,} ({n / div:.2f}{unit})"
    return f"{n:,}"


def run(args) -> int:
    from ..models.builder import count_parameters
    from ..models.official import resolve_release
    from ..presets.models import resolve_model_config

    release = None
    local = resolve_release(args.model, weights=False)  # a released-format dir, or its hub id (config only)
    if local is not None:
        release = _release_info(str(local), towers_from_args(args), args.template)
        cfg = release.pop("config")
    else:
        if args.tower or args.template:
            raise InputError("--tower / --template apply to released-format checkpoints only")
        cfg = resolve_model_config(args.model)
    counts = count_parameters(cfg)
    d = {"name": cfg.name, "connector_type": cfg.connector.type, "llm_template": cfg.llm.template, **counts.to_dict()}
    if release is not None:
        d["released_format"] = release
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    if release is not None:
        print(f"released-format checkpoint ({release['model_type']}); mapped onto our config:")
        for name, preset, feat in release["towers"]:
            print(f"  tower {name!r} -> {preset} ({feat})")
        pos, ours = release["image_position"], release["image_position_ours"]
        print(
            f"  image_position: {pos} in config.json; {ours if ours is not None else 'unknown (no tokenizer)'} from "
            f"the {cfg.llm.template} template and the checkpoint's tokenizer (ours is computed per prompt from the "
            "token ids; the constant is not used)"
        )
    print(f"model: {cfg.name}   connector: {cfg.connector.type}   template: {cfg.llm.template}")
    print("encoders:")
    for e, (_, n) in zip(cfg.encoders, counts.encoders):
        print(
            f"  {e.id:<28} {_fmt(n):>28}   {e.image_size}px -> {e.out_grid}x{e.out_grid}x{e.hidden_size}{'  (frozen)' if e.frozen else ''}"
        )
    print(f"connector:                     {_fmt(counts.connector):>28}")
    for k, n in counts.connector_breakdown.items():
        print(f"  {k:<28} {_fmt(n):>28}")
    print(f"llm:                           {_fmt(counts.llm):>28}")
    print(f"total:                         {_fmt(counts.total):>28}")
    c = cfg.connector
    print(
        f"visual tokens per square image: {counts.visual_tokens_square} "
        f"({counts.image_grid}x{counts.image_grid} grid{' + a newline per row' if c.newline else ''})"
    )
    if c.type == "sva" and c.num_llm_layers:
        layers = [c.llm_start + t * c.llm_stride for t in range(c.num_llm_layers)]
        print(f"in-LLM SVA after LLM layers: {layers}")
    return 0
