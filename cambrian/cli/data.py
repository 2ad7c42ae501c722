"""``cambrian data``: data tools. Each sub-subcommand lives in its own module (add_arguments / run)."""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = {
    "validate": ("cambrian.cli.data_validate", "check a LLaVA-format JSON/JSONL file and its images; report bad samples by reason"),
    "synthetic": ("cambrian.cli.data_synthetic", "write a small synthetic LLaVA dataset (smoke tests, the tiny recipe)"),
    "scenes": ("cambrian.cli.data_scenes", "render synthetic 3D scenes (pybullet) with exact annotations, CV-Bench-Synth and training data"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(mod).add_arguments(p)


def run(args) -> int:
    return int(importlib.import_module(SUBCOMMANDS[args.data_command][0]).run(args) or 0)
