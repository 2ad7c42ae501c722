"""``cambrian data mmvp-pairs``: image pairs that encoder A sees as the same and encoder B as different."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = """examples:
  cambrian data mmvp-pairs --images photos/ --encoder-a clip-vit-l-14-224 --encoder-b dinov2-large-518 \\
      --tau-a 0.95 --tau-b 0.6 --out runs/mmvp          # MMVP's setting (needs the hub weights)
  cambrian data mmvp-pairs --scene-pool 60 --encoder-a efficientnet-lite0 --encoder-b dinov2-small-focus \\
      --tau-a p99 --tau-b p90 --out runs/mmvp-scenes     # offline: rendered scenes with one-change variants

Thresholds are cosines, or pXX = the XX-th percentile of that encoder's pair cosines (encoders differ in scale).
Outputs: OUT/pairs.json, OUT/contact_sheet.png, OUT/similarity.png."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (recursive) or a text file listing image paths")
    src.add_argument(
        "--scene-pool",
        type=int,
        metavar="N",
        help="render N synthetic scenes plus one-change variants (colour / position) into OUT/pool "
        "and mine those (offline; needs pybullet)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--encoder-a", default="efficientnet-lite0", help="encoder preset that should be 'blind' (A)")
    parser.add_argument("--encoder-b", default="dinov2-small-focus", help="encoder preset that sees the difference (B)")
    parser.add_argument("--tau-a", default="0.95", help="pairs need cos_A >= this (number or pXX; default 0.95)")
    parser.add_argument("--tau-b", default="0.6", help="pairs need cos_B <= this (number or pXX; default 0.6)")
    parser.add_argument("--top-k", type=int, default=20, help="report the k pairs with the largest cos_A - cos_B")
    parser.add_argument(
        "--center",
        action="store_true",
        help="cosines of pool-centred embeddings (removes the common direction that pooled features "
        "share; useful when an encoder puts every pair near cos 1)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="scene pool seed")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..data.mmvp import list_images, load_encoder, mine_mmvp_pairs
    from ..errors import UserError

    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    out = Path(args.out)
    labels = None
    if args.scene_pool is not None:
        if args.scene_pool < 1:
            raise UserError(f"--scene-pool must be >= 1, got {args.scene_pool}")
        from ..data.scenes.variants import pair_label, render_variant_pool

        pool_dir = out / "pool"
        meta = pool_dir / "pool.json"
        old = json.loads(meta.read_text()) if meta.exists() else None
        if old and old.get("n_base") == args.scene_pool and old.get("seed") == args.seed:
            entries = old["images"]
            print(f"scene pool: reusing {meta}")
        else:
            entries = render_variant_pool(pool_dir, args.scene_pool, seed=args.seed, progress=not args.no_progress)
        root = pool_dir
        paths = [pool_dir / e["image"] for e in entries]
        index = {str(p): e for p, e in zip(paths, entries)}

        def labels(p):
            return pair_label(index[str(paths[p.i])], index[str(paths[p.j])])
    else:
        root = Path(args.images) if Path(args.images).is_dir() else Path(args.images).parent
        paths = list_images(args.images, args.limit)
    if args.limit is not None:
        paths = paths[: args.limit]
    print(f"{len(paths)} images; A = {args.encoder_a}, B = {args.encoder_b}")
    enc_a, enc_b = load_encoder(args.encoder_a), load_encoder(args.encoder_b)
    s = mine_mmvp_pairs(
        paths,
        enc_a,
        enc_b,
        out,
        tau_a=args.tau_a,
        tau_b=args.tau_b,
        top_k=args.top_k,
        batch_size=args.batch_size,
        names=(args.encoder_a, args.encoder_b),
        root=root,
        progress=not args.no_progress,
        labels=labels,
        centered=args.center,
    )
    q = s["cos_quantiles"]
    print(
        f"pair cosines A: median {q['a']['p50']:.3f}, p99 {q['a']['p99']:.3f}; B: median {q['b']['p50']:.3f}, "
        f"p99 {q['b']['p99']:.3f}"
    )
    print(
        f"{s['pairs_total']:,} pairs: {s['a_similar']:,} with cos_A >= {s['tau_a']:.3f}, {s['selected']:,} of them "
        f"with cos_B <= {s['tau_b']:.3f}; reporting the top {len(s['pairs'])}"
    )
    if labels is not None:
        c = Counter(p["label"] for p in s["pairs"])
        print("top pairs by kind: " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    for p in s["pairs"][:5]:
        print(
            f"  #{p['rank']} {p['a']} | {p['b']}: cos_A {p['cos_a']:.3f} cos_B {p['cos_b']:.3f}"
            + (f" ({p['label']})" if "label" in p else "")
        )
    print(f"wrote {out / 'pairs.json'}, {out / 'contact_sheet.png'}, {out / 'similarity.png'}")
    return 0
