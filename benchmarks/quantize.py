"""CPU int8 (``--quantize int8``) against fp32 for one model, measured in one run: decode speed, weight memory and
easy-VQA accuracy on the colour and shape questions (the question's own image).

    python benchmarks/quantize.py --model runs/demo/checkpoint [--images 200 --batch 16 --decode-tokens 48]

- decode tokens/s: greedy answers to a fixed prompt with an image, batch 1 and ``--batch``; timed from the end of
  the prefill (``generate_events`` returns after it) to the last token, so it is the decode loop alone; each
  setting twice, fp32 and int8 interleaved, best of the two;
- weights: bytes of the LLM's and connector's weights as stored (``cambrian.models.quantize.weight_bytes``);
- accuracy: every colour / shape question of ``--images`` easy-VQA test images (exact match), with 95% bootstrap
  intervals and the paired int8 - fp32 difference (``cambrian.eval.stats``). Tower features are computed once per
  image and shared by both models (the towers are not quantised).

Prints a table and the speed ratio (goal >= 1.5x) and accuracy change (goal <= 2 points); ``--json`` writes them.
``--ablate`` also scores, on the same questions, int8 of one group of layers at a time (connector, LM head,
attention, MLP gate/up, MLP down_proj, the whole LLM): the probe behind ``CPU_FLOAT_LAYERS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def decode_speed(model, image, batch: int, tokens: int) -> float:
    from cambrian.models.generate import SamplingParams

    sp = SamplingParams(max_new_tokens=tokens)
    texts = ["<image>\nDescribe the picture in detail, then list every colour you see."] * batch
    run = model.generate_events(texts, [[image]] * batch, sampling=sp)  # prefill happens here
    t0 = time.perf_counter()
    n = sum(ev.completion_tokens for ev in run if ev.finished)
    return n / (time.perf_counter() - t0)


# --ablate: (part of the model, substrings of the linear layers' names) per group
ABLATION = {
    "connector": ("connector", ("",)),
    "LM head": ("llm", ("lm_head",)),
    "attention q/k/v/o": ("llm", ("q_proj", "k_proj", "v_proj", "o_proj")),
    "MLP gate/up": ("llm", ("gate_proj", "up_proj")),
    "MLP down_proj": ("llm", ("down_proj",)),
    "whole LLM": ("llm", ("",)),
}


def int8_layers(model, group) -> None:
    """Dynamic int8 (as ``--quantize int8``) of the linear layers of ``group`` only."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    part, subs = group
    mod = getattr(model, part)
    names = {n for n, m in mod.named_modules() if type(m) is torch.nn.Linear and any(x in n for x in subs)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(mod, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8, inplace=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory or preset (a trained one reads colours)")
    ap.add_argument("--images", type=int, default=200, help="easy-VQA test images (all their colour/shape questions)")
    ap.add_argument("--batch", type=int, default=16, help="evaluation batch and the batched decode setting")
    ap.add_argument("--decode-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--ablate", action="store_true", help="also int8 one group of layers at a time (accuracy only)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from cambrian.demo.features import EvalFeatureMemo
    from cambrian.eval.adapters import CambrianEvalModel
    from cambrian.eval.api import GenerationOptions, GenerationRequest, get_benchmark
    from cambrian.eval.benchmarks.easyvqa import normalize
    from cambrian.eval.stats import bootstrap_mean, bootstrap_paired_diff
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.models.quantize import weight_bytes

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    fp = CambrianModel.load(args.model).eval()
    q = CambrianModel.load(args.model, quantize="int8", device="cpu").eval()
    models = {"fp32": fp, "int8": q}
    print(f"{args.model}: fp32 and int8 loaded; torch threads {args.threads}; load average {load0:.2f}", flush=True)

    bench = get_benchmark("easyvqa", max_images=args.images, seed=0)
    samples = [s for s in bench.load(None) if s.meta["category"] in ("color", "shape")]
    image = samples[0].load_images()[0]

    speed = {name: {} for name in models}
    for _ in range(2):  # interleaved, best of two: a busy neighbour hits both alike
        for name, m in models.items():
            with torch.no_grad():
                for b in (1, args.batch):
                    v = decode_speed(m, image, b, args.decode_tokens)
                    speed[name][b] = max(speed[name].get(b, 0.0), v)

    memo = EvalFeatureMemo()  # shared: both models have the same (unquantised) towers
    opts = GenerationOptions(max_new_tokens=bench.max_new_tokens)

    def score(m) -> list[float]:
        em, outs = CambrianEvalModel(m), []
        with m.features_from(memo):
            for k in range(0, len(samples), args.batch):
                chunk = samples[k : k + args.batch]
                outs += em.generate([GenerationRequest(s.prompt, s.load_images()) for s in chunk], opts)
        return [float(normalize(o) == normalize(s.answer)) for o, s in zip(outs, samples)]

    correct, secs = {}, {}
    for name, m in models.items():
        t0 = time.perf_counter()
        correct[name] = score(m)
        secs[name] = time.perf_counter() - t0

    rows = []
    for name, m in models.items():
        acc = bootstrap_mean(correct[name])
        rows.append(
            {
                "setting": name,
                "decode_tok_s_b1": speed[name][1],
                f"decode_tok_s_b{args.batch}": speed[name][args.batch],
                "llm_connector_mb": (weight_bytes(m.llm) + weight_bytes(m.connector)) / 2**20,
                "accuracy": acc.value,
                "ci95": [acc.low, acc.high],
                "eval_s": secs[name],
            }
        )
    diff = bootstrap_paired_diff(correct["int8"], correct["fp32"])
    print(f"\neasy-VQA colour+shape questions: {len(samples)} from {args.images} test images (own image)\n")
    print(
        f"| setting | decode tok/s (batch 1) | decode tok/s (batch {args.batch}) | LLM+connector weights | "
        "accuracy [95% CI] | eval time |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['decode_tok_s_b1']:.1f} | {r[f'decode_tok_s_b{args.batch}']:.1f} | "
            f"{r['llm_connector_mb']:.0f} MB | {100 * r['accuracy']:.1f}% [{100 * r['ci95'][0]:.1f}, "
            f"{100 * r['ci95'][1]:.1f}] | {r['eval_s']:.0f} s |"
        )
    ratio1 = speed["int8"][1] / speed["fp32"][1]
    ratio_b = speed["int8"][args.batch] / speed["fp32"][args.batch]
    print(
        f"\nint8 / fp32 decode speed: {ratio1:.2f}x at batch 1, {ratio_b:.2f}x at batch {args.batch} (goal >= 1.5x)"
        f"\naccuracy change int8 - fp32: {100 * diff.value:+.1f} points, 95% CI [{100 * diff.low:+.1f}, "
        f"{100 * diff.high:+.1f}] (goal within 2 points); answers that differ: "
        f"{sum(a != b for a, b in zip(correct['int8'], correct['fp32']))} of {len(samples)}"
    )
    ablation = {}
    if args.ablate:
        import copy

        for group, parts in ABLATION.items():
            m = copy.deepcopy(fp)
            int8_layers(m, parts)
            ablation[group] = sum(score(m)) / len(samples)
            print(
                f"int8 {group} only: {100 * ablation[group]:.1f}% (fp32 {100 * rows[0]['accuracy']:.1f}%)", flush=True
            )
    load1 = os.getloadavg()[0]
    print(f"load average after: {load1:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": args.model,
                    "questions": len(samples),
                    "rows": rows,
                    "speed_ratio_b1": ratio1,
                    f"speed_ratio_b{args.batch}": ratio_b,
                    "accuracy_diff": [diff.value, diff.low, diff.high],
                    "ablation": ablation,
                    "load_before": load0,
                    "load_after": load1,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
