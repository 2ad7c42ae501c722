"""``cambrian data``: data tools. Each sub-subcommand lives in its own module (add_arguments / run)."""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = {
    "validate": (
        "cambrian.cli.data_validate",
        "check a LLaVA-format JSON/JSONL file and its images; report bad samples by reason",
    ),
    "synthetic": (
        "cambrian.cli.data_synthetic",
        "write a small synthetic LLaVA dataset (smoke tests, the tiny recipe)",
    ),
    "scenes": (
        "cambrian.cli.data_scenes",
        "render synthetic 3D scenes (pybullet) with exact annotations, CV-Bench-Synth and training data",
    ),
    "curate": (
        "cambrian.cli.data_curate",
        "curate a data mix from a YAML recipe: dedup, per-source cap, category ratios, response-format instructions, report",
    ),
    "engine": (
        "cambrian.cli.data_engine",
        "data engine: topics -> pages -> sections with images -> VQA through an OpenAI-compatible LLM",
    ),
    "synth-vstar": (
        "cambrian.cli.data_synth_vstar",
        "build synth-vstar: large renders with one small target, attribute and left/right questions, true boxes",
    ),
    "mmvp-pairs": (
        "cambrian.cli.data_mmvp",
        "mine 'A-blind' image pairs (MMVP): similar for encoder A, different for encoder B",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(mod).add_arguments(p)


def run(args) -> int:
    return int(importlib.import_module(SUBCOMMANDS[args.data_command][0]).run(args) or 0)
