"""Training throughput of a stage-2 step vs the bare HF LLM on the same token count.

    python benchmarks/train_throughput.py --model nano [--batch 8 --text-len 256 --steps 10 --features]

Measures forward + backward (+ optimizer step, reported separately) of ``CambrianModel`` at stage 2 (connector + LLM
trainable, towers frozen) on a synthetic batch: ``batch`` samples, each one image (square, tower resolution) and
``text-len`` text tokens. Then the bare ``model.llm`` forward + backward on input ids of the same total length
(text + visual tokens), all of its parameters trainable. Prints samples/s and tokens/s of both and their ratio
(goal >= 0.9: the vision side must cost little next to the LLM), plus MFU on GPU. ``--features`` feeds random
tower outputs (the cached-feature path) instead of pixels, so the towers are not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cambrian.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from cambrian.models.vlm import load_vlm as load_model
from cambrian.train.freeze import apply_freeze
from cambrian.train.metrics import peak_flops, train_flops_per_token


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, steps, warmup, dev):
    for _ in range(warmup):
        fn()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nano", help="preset / model dir")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--text-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--features", action="store_true", help="feed random cached-style features instead of pixels")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args(argv)

    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = load_model(args.model).to(dev)
    apply_freeze(model, model.trainable_parameters(2))
    if args.gradient_checkpointing and hasattr(model.llm, "gradient_checkpointing_enable"):
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    B, L = args.batch, args.text_len
    vocab = model.llm.config.vocab_size
    encs = list(model.encoders)
    R = [e.config.image_size for e in encs]
    vis = int(model.visual_token_count((R[0], R[0])))
    ids = torch.randint(100, min(vocab, 30000), (B, L), device=dev)
    ids[:, 1] = IMAGE_TOKEN_INDEX
    labels = ids.clone()
    labels[:, :2] = IGNORE_INDEX
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, image_sizes=[(R[0], R[0])] * B)
    if args.features:
        batch["features"] = [
            torch.randn(B, e.config.out_grid, e.config.out_grid, e.config.hidden_size, device=dev) for e in encs
        ]
    else:
        batch["pixel_values"] = [torch.randn(B, 3, r, r, device=dev) for r in R]
    T = L - 1 + vis  # LLM sequence length after splicing
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=dev.type == "cuda")

    def cambrian_fb():
        with amp:
            out = model(**batch)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    def cambrian_step():
        with amp:
            out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    llm_ids = torch.randint(100, min(vocab, 30000), (B, T), device=dev)

    from contextlib import nullcontext

    try:  # the in-LLM SVA hooks must not fire on a bare LLM call
        from cambrian.models.cambrian_model import no_in_llm_aggregation
    except ImportError:  # pragma: no cover
        no_in_llm_aggregation = None

    def bare_fb():
        with no_in_llm_aggregation(model) if no_in_llm_aggregation else nullcontext(), amp:
            out = model.llm(input_ids=llm_ids, attention_mask=torch.ones_like(llm_ids), labels=llm_ids)
        out.loss.backward()
        model.llm.zero_grad(set_to_none=True)

    t_c = _time(cambrian_fb, args.steps, args.warmup, dev)
    t_b = _time(bare_fb, args.steps, args.warmup, dev)
    t_s = _time(cambrian_step, max(2, args.steps // 2), 1, dev)
    n_llm = sum(p.numel() for p in model.llm.parameters())
    res = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "model": args.model,
        "batch": B,
        "llm_seq_len": T,
        "visual_tokens_per_image": vis,
        "features": args.features,
        "cambrian_samples_per_s": B / t_c,
        "cambrian_tokens_per_s": B * T / t_c,
        "bare_llm_samples_per_s": B / t_b,
        "bare_llm_tokens_per_s": B * T / t_b,
        "ratio": t_b / t_c,
        "full_step_samples_per_s": B / t_s,
    }
    peak = peak_flops(dev)
    if peak:
        f = train_flops_per_token(n_llm, n_llm)
        res["mfu_cambrian"] = f * B * T / t_c / peak
        res["mfu_bare_llm"] = f * B * T / t_b / peak
    for k, v in res.items():
        print(f"{k:>26}: {v:.4g}" if isinstance(v, float) else f"{k:>26}: {v}")
    print(f"throughput ratio cambrian / bare LLM = {res['ratio']:.3f} (goal >= 0.9)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
