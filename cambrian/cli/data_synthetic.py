"""``cambrian data synthetic OUT [--n N] [--text-only K]``: a small LLaVA-format dataset (colour questions on solid
images + arithmetic text-only samples) for smoke tests and the ``tiny`` recipe (``cambrian train tiny``)."""

from __future__ import annotations

import argparse

from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (data.jsonl + images/)")
    parser.add_argument("--n", type=int, default=64, help="image samples (default 64)")
    parser.add_argument("--text-only", type=int, default=8, help="text-only samples (default 8)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..data.synthetic import make_synthetic_data

    if args.n < 0 or args.text_only < 0:
        raise InputError("--n and --text-only must be >= 0")
    out = make_synthetic_data(args.out, n=args.n, text_only=args.text_only, seed=args.seed)
    print(f"wrote {out} ({args.n} image samples, {args.text_only} text-only)")
    return 0
