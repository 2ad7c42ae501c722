"""``cambrian data curate RECIPE.yaml --out DIR``: dedup, cap, rebalance and add response-format instructions."""

from __future__ import annotations

import argparse

ENGINES = ("stream", "datasets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = """recipe (YAML; paths relative to the recipe file):
  sources:
    - {name: vqav2, path: vqav2.jsonl, images: images/coco, category: general}
    - {name: chartqa, path: chartqa.jsonl, images: images/chartqa, category: ocr, system_prompt: number_or_phrase}
  cap: 350000            # per-source cap (null: none)
  ratios: cambrian-7m    # or {general: 34.52, ocr: 27.22, ...}; optional
  total: null            # with ratios: records to keep (default: the most the capped pool allows)
  system_prompts: true   # response-format instructions for short answers
  dedup: content         # content | path | off
  seed: 0

outputs: OUT/data.jsonl (with source, source_id, source_index), stats.json, report.md, categories.png,
sources.png, answer_length.png. Train on it with data='[{path: OUT/data.jsonl, images: IMAGE_ROOT}]' (the
image root is printed and stored in stats.json)."""
    parser.add_argument("recipe", help="curation recipe (YAML)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous curation in --out")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="stream",
        help="stream: one process, memory flat in the record count (default); datasets: Hugging Face "
        "datasets map/filter with --num-proc workers (same output)",
    )
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes for --engine datasets")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG charts")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..data.curate import curate, curate_with_datasets, load_recipe
    from ..errors import UserError

    recipe = load_recipe(args.recipe)
    if args.num_proc is not None and args.num_proc < 1:
        raise UserError(f"--num-proc must be >= 1, got {args.num_proc}")
    if args.engine == "datasets":
        stats = curate_with_datasets(
            recipe,
            args.out,
            num_proc=args.num_proc,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            plots=not args.no_plots,
        )
    else:
        if args.num_proc not in (None, 1):
            raise UserError("--num-proc needs --engine datasets (the streaming engine is one process)")
        stats = curate(
            recipe, args.out, overwrite=args.overwrite, progress=not args.no_progress, plots=not args.no_plots
        )
    t = stats["totals"]
    print(
        f"sources {len(stats['sources'])}: {t['records']:,} read, {t['bad']:,} bad, {t['duplicates']:,} duplicates, "
        f"{t['capped']:,} after cap, {t['selected']:,} written; {t['prompt_share']}% got a response-format "
        f"instruction; report: {args.out}/report.md"
    )
    return 0
