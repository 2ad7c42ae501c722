"""``cambrian data scenes``: render train/test scenes, then CV-Bench-Synth (from test) and LLaVA data (from train).

    cambrian data scenes --out OUT --train 2000 --test 300 [--seed 0] [--size 256x256] [--workers 2]

writes ``OUT/train/`` and ``OUT/test/`` (scene dirs, see ``render.py``), ``OUT/cvbench_synth/`` (official CV-Bench
layout; score with ``cambrian eval score --bench cvbench --data OUT/cvbench_synth ...``),
``OUT/llava_stage1.jsonl`` and ``OUT/llava_stage2.jsonl`` (image folder ``OUT/train``) and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = s.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 256x256, got {s!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=200, help="number of training scenes (0 = none)")
    parser.add_argument("--test", type=int, default=100, help="number of test scenes for CV-Bench-Synth (0 = none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=_size, default=(256, 256), help="render size WxH (default 256x256)")
    parser.add_argument("--min-objects", type=int, default=3)
    parser.add_argument("--max-objects", type=int, default=8)
    parser.add_argument("--shapes", default="cube,sphere,cylinder", help="comma list from cube,sphere,cylinder,capsule")
    parser.add_argument("--shadow", action="store_true", help="tiny-renderer shadows (about 2x slower)")
    parser.add_argument("--workers", type=int, default=1, help="render processes (output does not depend on it)")
    parser.add_argument("--no-depth", action="store_true", help="do not save depth PNGs")
    parser.add_argument("--no-cvbench", action="store_true", help="skip CV-Bench-Synth")
    parser.add_argument("--no-llava", action="store_true", help="skip the LLaVA JSONL files")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    from ..cvbench.builder import build_cvbench_synth
    from ..cvbench.training_data import make_llava_data
    from ..data.scenes.render import assert_disjoint, render_scenes

    out = Path(args.out)
    cfg = {
        "width": args.size[0],
        "height": args.size[1],
        "min_objects": args.min_objects,
        "max_objects": args.max_objects,
        "shapes": [s.strip() for s in args.shapes.split(",") if s.strip()],
        "shadow": args.shadow,
    }
    summary: dict = {}
    for split, n in (("train", args.train), ("test", args.test)):
        if n > 0:
            summary[split] = render_scenes(
                out / split,
                n,
                seed=args.seed,
                split=split,
                config=cfg,
                workers=args.workers,
                progress=not args.no_progress,
                save_depth=not args.no_depth,
            )
    if args.train > 0 and args.test > 0:
        assert_disjoint(out / "train", out / "test")
    if args.test > 0 and not args.no_cvbench:
        summary["cvbench_synth"] = build_cvbench_synth(
            out / "test", out / "cvbench_synth", seed=args.seed, progress=not args.no_progress
        )
    if args.train > 0 and not args.no_llava:
        summary["llava_stage1"] = make_llava_data(out / "train", out / "llava_stage1.jsonl", stage=1, seed=args.seed)
        summary["llava_stage2"] = make_llava_data(out / "train", out / "llava_stage2.jsonl", stage=2, seed=args.seed)
    from ..utils.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for split in ("train", "test"):
            if split in summary:
                s = summary[split]
                print(
                    f"{split}: {s['n']} scenes, {s['objects']} objects, {s['scenes_per_s']} scenes/s -> {out / split}"
                )
        if "cvbench_synth" in summary:
            r = summary["cvbench_synth"]
            print(f"CV-Bench-Synth: {r['n']} questions {r['per_task']} -> {out / 'cvbench_synth'}")
            print(f"  answer letters: {r['letter_balance']}")
        for k in ("llava_stage1", "llava_stage2"):
            if k in summary:
                print(f"{k}: {summary[k]['records']} records {summary[k]['turns']} -> {summary[k]['out']}")
    return 0
