"""``cambrian info PRESET_OR_DIR``: parameter counts per component and visual tokens, without loading weights."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model preset name (configs/models/*.yaml), checkpoint directory, or YAML/JSON config file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def _fmt(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n:,} ({n / div:.2f}{unit})"
    return f"{n:,}"


def run(args) -> int:
    from ..presets.models import resolve_model_config
    from ..models.builder import count_parameters

    cfg = resolve_model_config(args.model)
    counts = count_parameters(cfg)
    d = {"name": cfg.name, "connector_type": cfg.connector.type, "llm_template": cfg.llm.template, **counts.to_dict()}
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"model: {cfg.name}   connector: {cfg.connector.type}   template: {cfg.llm.template}")
    print("encoders:")
    for e, (_, n) in zip(cfg.encoders, counts.encoders):
        print(f"  {e.id:<28} {_fmt(n):>28}   {e.image_size}px -> {e.out_grid}x{e.out_grid}x{e.hidden_size}{'  (frozen)' if e.frozen else ''}")
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
