"""``cambrian train CONFIG.yaml [key=value ...]``: run a training recipe (configs/recipes/*.yaml).

Single process: ``cambrian train configs/recipes/tiny.yaml``; several GPUs / nodes: launch the same command under
``torchrun`` (see docs/training.md)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training recipe YAML (TrainConfig fields)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override recipe fields, dotted keys allowed (lr=2e-5 lora.enabled=true)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from the latest checkpoint in output_dir (or the given checkpoint dir)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="output_dir holds a previous run: delete its metrics, checkpoints, config and model first",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args) -> int:
    import yaml

    from ..train.config import TrainConfig

    if args.resume and args.resume != "auto" and "=" in args.resume and not os.path.exists(args.resume):
        args.overrides.append(args.resume)  # `--resume lr=2e-5`: an override, not a checkpoint path
        args.resume = "auto"
    if args.resume and args.overwrite:
        raise InputError(
            "--resume and --overwrite exclude each other (--overwrite deletes the checkpoints --resume reads)"
        )
    cfg = TrainConfig.load(args.config, args.overrides)
    if args.resume:
        cfg.resume = args.resume
        cfg.overwrite = False
    if args.overwrite:
        cfg.overwrite = True
        cfg.resume = None
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from ..train.checkpoint import CheckpointError
    from ..train.trainer import DataQualityError, Trainer

    try:
        trainer = Trainer(cfg)
        summary = trainer.train()
    except DataQualityError as e:
        print(f"error: training stopped: {e}", file=sys.stderr)
        return 2
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if trainer.env.is_main:
        print(
            f"[cambrian train] done: {trainer.state['step']} steps, final loss {summary.get('loss', float('nan')):.4f}, "
            f"bad samples {summary.get('bad_counts', {})}; model saved to {cfg.output_dir}"
        )
    return 0
