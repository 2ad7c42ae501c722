"""Does stage 1 teach the connector to carry the image? Held-out caption loss with the right image vs another
scene's image, after N connector-only steps on scene captions — optionally after a grounding stage first.

    python benchmarks/stage1_image_use.py [--model nano] [--scenes 600] [--steps 30] [--batch 8]
                                          [--lr 1e-3] [--sva-lr 1e-3] [--heldout 48] [--out runs/bench-stage1]
                                          [--ground-epochs 12]

With ``--ground-epochs N`` the connector is first grounded (``stage: ground``: its tokens pulled onto the LLM's
embeddings of the words for what each cell shows, from the scenes' masks; N passes over the train scenes) and the
three losses are printed after grounding too, then after stage 1.

Renders train / test scenes (the demo's scene world), writes stage-1 captions for both, caches the frozen towers'
features, trains stage 1 (LLM frozen) through the project's trainer, then prints for ``--heldout`` test captions
the mean caption-token loss with (a) the caption's own image, (b) the image of another test scene, (c) no image
at all, plus the visual tokens' mean norm, the mean distance between two images' tokens, and the LLM's mean input-
embedding norm. (a) well below (b) = the connector carries image information the frozen LLM uses; (a) = (b) below
(c) = the connector learned an image-independent soft prompt (format and priors only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cambrian.constants import IGNORE_INDEX, IMAGE_TOKEN
from cambrian.data.collator import Collator
from cambrian.data.dataset import normalize_conversation
from cambrian.utils.io import read_jsonl


@torch.no_grad()
def caption_loss(model, records: list[dict], mode: str, batch_size: int = 8) -> float:
    """Mean loss per supervised token; ``mode`` own | other (image of record i+n/2) | none (no visual tokens)."""
    from PIL import Image

    tokenize = model.tokenize_conversation
    n = len(records)
    total = count = 0.0
    for s in range(0, n, batch_size):
        chunk = records[s : s + batch_size]
        seqs = []
        for r in chunk:
            conv = [dict(t) for t in r["conversations"]]
            if mode == "none":
                conv[0]["value"] = conv[0]["value"].replace(IMAGE_TOKEN + "\n", "")
            seqs.append(tokenize(normalize_conversation({**r, "conversations": conv}, 0 if mode == "none" else 1)))
        batch = Collator(pad_token_id=0)(
            [
                {"input_ids": torch.tensor(q["input_ids"]), "labels": torch.tensor(q["labels"]), "index": j}
                for j, q in enumerate(seqs)
            ]
        )
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
        kw = {}
        if mode != "none":
            src = [records[(s + j + (n // 2 if mode == "other" else 0)) % n]["image"] for j in range(len(chunk))]
            pixels, sizes = model.encode_images([Image.open(p).convert("RGB") for p in src])
            kw = {"pixel_values": pixels, "image_sizes": sizes}
        out = model(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), labels=labels.to(model.device), **kw
        )
        k = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total += float(out.loss) * k
        count += k
    return total / count


@torch.no_grad()
def token_stats(model, images: list[str]) -> dict:
    from PIL import Image

    pixels, sizes = model.encode_images([Image.open(p).convert("RGB") for p in images[:4]])
    blocks = torch.stack(model.visual_tokens(model.image_features(pixels), sizes).blocks).float()
    emb = model.llm.get_input_embeddings().weight.float()
    return {
        "token_norm": round(float(blocks.norm(dim=-1).mean()), 3),
        "image_to_image_distance": round(float((blocks[0] - blocks[1]).norm(dim=-1).mean()), 3),
        "llm_embedding_norm": round(float(emb.norm(dim=-1).mean()), 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nano", help="model preset or YAML (any connector)")
    ap.add_argument("--scenes", type=int, default=600, help="training scenes (one caption each)")
    ap.add_argument("--test-scenes", type=int, default=70)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3, help="projector / newline lr")
    ap.add_argument("--sva-lr", type=float, default=1e-3, help="SVA lr (the paper's stage 1 uses 1e-4)")
    ap.add_argument("--heldout", type=int, default=48, help="held-out test captions scored")
    ap.add_argument(
        "--ground-epochs", type=int, default=0, help="grounding passes over the train scenes before stage 1"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench-stage1")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    from cambrian.data.scenes import render_scenes
    from cambrian.demo.data import SCENE_CONFIG, image_paths, write_stage1
    from cambrian.demo.train import run_stage, stage_config
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import resolve_model_config
    from cambrian.train.features import FeatureCache

    out = Path(args.out)
    t0 = time.perf_counter()
    for split, n in (("train", args.scenes), ("test", args.test_scenes)):
        if not (out / split / "annotations" / "coco.json").exists():
            render_scenes(
                out / split, n, seed=args.seed, split=split, config=SCENE_CONFIG, progress=True, save_depth=False
            )
        write_stage1(out / f"{split}.jsonl", out / split, seed=args.seed)
    model = CambrianModel.from_config(resolve_model_config(args.model)).eval()
    cache = FeatureCache(out / "features", list(model.encoders))
    cache.build(image_paths(out / "train.jsonl"), model.device, progress=True)
    heldout = list(read_jsonl(out / "test.jsonl"))[: args.heldout]
    before = token_stats(model, [r["image"] for r in heldout])
    res = {"config": vars(args), "tokens_before": before}
    if args.ground_epochs:
        from cambrian.data.scenes.grounding import scene_grounding_records
        from cambrian.utils.io import atomic_write_text

        recs = scene_grounding_records(out / "train", model.connector.config.grid)
        atomic_write_text(out / "ground.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
        cfg = stage_config(
            "ground",
            out / "ground.jsonl",
            out / "ground",
            lr=1e-3,
            sva_lr=None,
            micro_batch=32,
            global_batch=32,
            epochs=args.ground_epochs,
            max_steps=None,
            seed=args.seed,
            feature_cache=str(out / "features"),
            warmup_ratio=0.05,
        )
        g = run_stage(model, cfg)
        res["ground"] = {k: g[k] for k in ("steps", "samples", "seconds", "final_loss")}
        res["heldout_caption_loss_after_grounding"] = {
            m: round(caption_loss(model, heldout, m, args.batch), 4) for m in ("own", "other", "none")
        }
        res["tokens_after_grounding"] = token_stats(model, [r["image"] for r in heldout])
    cfg = stage_config(
        1,
        out / "train.jsonl",
        out / "stage1",
        lr=args.lr,
        sva_lr=args.sva_lr,
        micro_batch=args.batch,
        global_batch=args.batch,
        epochs=max(1, -(-args.steps * args.batch // args.scenes)),
        max_steps=args.steps,
        seed=args.seed,
        feature_cache=str(out / "features"),
        warmup_ratio=0.05,
    )
    train = run_stage(model, cfg)
    res.update(
        {
            "train": {k: train[k] for k in ("steps", "samples", "tokens", "seconds", "final_loss")},
            "heldout_caption_loss": {
                m: round(caption_loss(model, heldout, m, args.batch), 4) for m in ("own", "other", "none")
            },
            "tokens_after": token_stats(model, [r["image"] for r in heldout]),
            "seconds_total": round(time.perf_counter() - t0, 1),
        }
    )
    h = res["heldout_caption_loss"]
    print(json.dumps(res, indent=1))
    if "heldout_caption_loss_after_grounding" in res:
        g = res["heldout_caption_loss_after_grounding"]
        print(
            f"\nheld-out caption loss after grounding ({res['ground']['steps']} steps, {res['ground']['seconds']:.0f} s): "
            f"own image {g['own']:.4f} | another scene's image {g['other']:.4f} | no image {g['none']:.4f}"
        )
    print(
        f"\nheld-out caption loss after {train['steps']} steps ({train['samples']} captions, {train['seconds']:.0f} s): "
        f"own image {h['own']:.4f} | another scene's image {h['other']:.4f} | no image {h['none']:.4f}"
    )
    print(f"image information used by the LLM (other - own): {h['other'] - h['own']:+.4f} nats/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
