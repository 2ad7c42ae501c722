"""``cambrian cvbench build``: CV-Bench-style questions from COCO-style / Omni3D-style annotations.

    cambrian cvbench build --coco instances.json [--coco-images DIR] [--source-2d COCO] \
                           --omni3d omni3d.json [--omni3d-images DIR] [--source-3d Omni3D] --out DIR [--seed 0]
    cambrian cvbench build --scenes SCENE_DIR --out DIR        # CV-Bench-Synth from `cambrian data scenes` output

Rule parameters (see cambrian/cvbench/builder.py): --param key=value (JSON values), e.g.
``--param depth_offset=0.2 --param relation_margin=0.1 --param 'max_per_image={"Count": 3}'``.
Writes test_2d.parquet, test_3d.parquet, test*.jsonl, img/ and build_report.json (counts, answer-letter balance).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cvbench_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="build CV-Bench-style questions (official schema) from annotations")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--coco", help="COCO-style instances JSON (Count, Relation)")
    b.add_argument("--coco-images", help="image root for --coco (default: the JSON's directory)")
    b.add_argument("--source-2d", default="COCO", help="source column for 2D rows (ADE20K, COCO, ...)")
    b.add_argument("--omni3d", help="Omni3D-style JSON (Depth, Distance)")
    b.add_argument("--omni3d-images", help="image root for --omni3d (default: the JSON's directory)")
    b.add_argument("--source-3d", default="Omni3D", help="source column for 3D rows")
    b.add_argument("--scenes", help="a scene dir from `cambrian data scenes` (builds CV-Bench-Synth)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="rule parameter (fields of cambrian.cvbench.builder.BuildParams; values read as YAML), e.g. "
        "--param count_max=5 --param max_per_image.Count=3",
    )
    b.add_argument("--json", action="store_true", help="print the build report as JSON")


def run(args) -> int:
    from ..cvbench.builder import SYNTH_PARAMS, BuildParams, build_cvbench, build_cvbench_synth
    from ..typed import apply_overrides

    raw = apply_overrides({}, args.param, what="--param")
    params = BuildParams.from_dict(raw, "--param")  # every mistake is one line before any work
    if args.scenes:  # the synthetic scenes' defaults, then --param
        report = build_cvbench_synth(
            args.scenes,
            args.out,
            seed=args.seed,
            params=BuildParams.from_dict({**SYNTH_PARAMS, **raw}, "--param"),
            progress=True,
        )
    elif args.coco or args.omni3d:
        report = build_cvbench(
            args.out,
            coco=args.coco,
            coco_images=args.coco_images,
            omni3d=args.omni3d,
            omni3d_images=args.omni3d_images,
            source_2d=args.source_2d,
            source_3d=args.source_3d,
            seed=args.seed,
            params=params,
            progress=True,
        )
    else:
        print("cambrian cvbench build: give --coco and/or --omni3d, or --scenes")
        return 2
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"{report['n']} questions {report['per_task']} -> {args.out}")
        print(f"answer letters: {report['letter_balance']}")
        if report.get("dropped"):
            print(f"dropped: {report['dropped']}")
    return 0
