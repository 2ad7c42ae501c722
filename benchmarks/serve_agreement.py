"""Closing the loop: the eval harness through ``cambrian serve`` gives the in-process predictions (greedy).

    python benchmarks/serve_agreement.py --model nano --bench cvbench-synth,synth-attribute \\
        --data-root runs/demo/data --limit 24

Loads the model once, runs the benchmarks with the in-process adapter (``CambrianEvalModel``), then starts the real
server on 127.0.0.1 with the same model object and runs them again through the OpenAI-compatible adapter
(``openai:<url>#<name>``, images as PNG data: URLs, concurrent requests batched by the server). Prints, per
benchmark, how many predictions are identical, both primary metrics and the wall times, and the first differences.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _predictions(path: Path) -> dict:
    return {json.dumps(r["idx"]): r["prediction"] for r in map(json.loads, path.read_text().splitlines())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nano", help="preset name or checkpoint directory (default nano)")
    ap.add_argument("--bench", required=True, help="comma-separated benchmark names")
    ap.add_argument("--data-root", required=True, help="directory with one folder per benchmark")
    ap.add_argument("--limit", type=int, default=24, help="samples per benchmark (default 24)")
    ap.add_argument("--batch-size", type=int, default=8, help="in-process batch = concurrent requests (default 8)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--out", default=None, help="keep the two run directories here (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch

    from cambrian.cli.chat import load_model
    from cambrian.eval.adapters import CambrianEvalModel, load_eval_model
    from cambrian.eval.api import get_benchmark
    from cambrian.eval.runner import run_benchmarks
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # a bare preset's connector is random: the same one on every run
    names = [b.strip() for b in args.bench.split(",") if b.strip()]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="serve-agreement-"))
    model = load_model(args.model, "cpu")
    label = Path(args.model).name if Path(args.model).is_dir() else args.model
    print(f"model {args.model}; load average {os.getloadavg()[0]:.2f} (the machine may be shared)", flush=True)

    def run(m, sub):
        t = time.perf_counter()
        metrics = run_benchmarks(
            m,
            [get_benchmark(b) for b in names],
            args.data_root,
            out / sub,
            batch_size=args.batch_size,
            limit=args.limit,
            progress=False,
        )
        return metrics, time.perf_counter() - t

    local_metrics, local_s = run(CambrianEvalModel(model, name=label), "in-process")
    cap = max(get_benchmark(b).max_new_tokens for b in names)
    settings = ServeSettings(model_name=label, max_tokens_cap=cap, max_batch_size=args.batch_size)
    with ServerThread(model, settings) as srv:
        remote = load_eval_model(f"openai:{srv.base_url}#{label}")
        remote.concurrency = args.batch_size
        remote_metrics, remote_s = run(remote, "served")

    total = same = 0
    for b in names:
        a = _predictions(out / "in-process" / b / "predictions.jsonl")
        r = _predictions(out / "served" / b / "predictions.jsonl")
        agree = sum(1 for k in a if r.get(k) == a[k])
        total, same = total + len(a), same + agree
        bench = get_benchmark(b)
        print(
            f"{b:<18} {agree}/{len(a)} identical predictions; {bench.primary_metric}: in-process "
            f"{local_metrics[b].get(bench.primary_metric)} served {remote_metrics[b].get(bench.primary_metric)}"
        )
        for k in [k for k in a if r.get(k) != a[k]][:3]:
            print(f"    idx {k}: in-process {a[k]!r} served {r.get(k)!r}")
    print(
        f"\nagreement: {same}/{total} ({100.0 * same / max(1, total):.1f}%); wall in-process {local_s:.1f} s, "
        f"served {remote_s:.1f} s (batch / concurrency {args.batch_size}); runs in {out}"
    )
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
