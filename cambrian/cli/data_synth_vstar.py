"""``cambrian data synth-vstar``: build the synth-vstar benchmark (large renders, one small target among distractors;
attribute and left/right questions with ground-truth boxes).

    cambrian data synth-vstar --out DIR [--scenes 100] [--size 1024] [--seed 0]

Renders are cached (``$CAMBRIAN_CACHE/synth-vstar/``), so a rebuild or a larger set renders only the missing scenes.
Evaluate with ``cambrian eval run --bench synth-vstar --data-root PARENT_OF_DIR ...`` (the folder named synth-vstar).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory (questions.jsonl + images/)")
    p.add_argument("--scenes", type=int, default=100, help="scenes to render; two questions each (default 100)")
    p.add_argument("--size", type=int, default=1024, help="render side in pixels (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..errors import UserError
    from ..eval.benchmarks.synth_vstar import build_synth_vstar

    if args.scenes < 1 or args.size < 64:
        raise UserError("--scenes must be >= 1 and --size >= 64")
    summary = build_synth_vstar(args.out, args.scenes, seed=args.seed, size=args.size, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0
