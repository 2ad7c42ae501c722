"""Throughput of ``cambrian serve`` under concurrent clients vs sequential requests, measured in one run.

    python benchmarks/serve_throughput.py --model nano [--requests 32 --max-tokens 32 --clients 1,4,16]

Starts the real server (FastAPI + uvicorn, the batching worker) on 127.0.0.1 in this process and talks to it with the
official ``openai`` client, greedy, one image per request (a random colour picture, as a data: URL):

- ``in-process``: ``generate_events`` one request at a time, no HTTP (what the server layer costs shows against it);
- ``clients=1 (sequential)``: one client sending the requests one after another (the baseline of the ratio);
- ``clients=N``: N client threads sending the same requests, each as soon as its last one came back;
- ``clients=16, batching off``: the same with ``--max-batch-size 1``, to show where the gain comes from.

Prints requests/s, completion tokens/s, p50/p95 latency and the mean batch (requests decoded per step) of each
setting, then the speed-up of
16 clients over sequential requests (goal >= 2x on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _images(n, size, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        colour = rng.integers(0, 255, 3)
        arr = np.clip(colour + rng.normal(0, 20, (size, size, 3)), 0, 255).astype("uint8")
        out.append(Image.fromarray(arr))
    return out


def run_level(base_url, model_name, bodies, clients):
    """Send ``bodies`` from ``clients`` threads (closed loop); returns (wall seconds, latencies, completion tokens)."""
    import openai

    lock = threading.Lock()
    todo = list(range(len(bodies)))
    lat, toks, errors = [], [], []

    def worker():
        c = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            t = time.perf_counter()
            try:
                r = c.chat.completions.create(model=model_name, **bodies[i])
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                errors.append(repr(e))
                continue
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                toks.append(r.usage.completion_tokens)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return wall, lat, toks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nano", help="preset name or checkpoint directory (default nano)")
    ap.add_argument("--requests", type=int, default=32, help="requests per setting (default 32)")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each request (default 32)")
    ap.add_argument("--clients", default="1,4,16", help="concurrent client counts (default 1,4,16)")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--batch-window-ms", type=float, default=10.0)
    ap.add_argument("--image-size", type=int, default=256, help="side of the square test images (0 = text only)")
    ap.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", "1")),
        help="torch CPU threads (default $OMP_NUM_THREADS or 1)",
    )
    ap.add_argument(
        "--no-batching-baseline", dest="off", action="store_false", help="skip the 16-clients run with batching off"
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import torch

    from cambrian.cli.chat import load_model
    from cambrian.eval.adapters import image_to_data_url
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # a bare preset's connector is random: the same one on every run
    levels = sorted({1, *(int(x) for x in args.clients.split(",") if x.strip())})  # 1 = the sequential baseline
    load0 = os.getloadavg()
    t = time.perf_counter()
    model = load_model(args.model, "cpu")
    print(
        f"model {args.model} loaded in {time.perf_counter() - t:.1f} s; torch threads {args.threads}; "
        f"load average before: {load0[0]:.2f} (the machine may be shared)",
        flush=True,
    )

    # a mix of short and open-ended questions: answers from a few tokens to max_tokens, as a chat workload has
    questions = [
        "Describe this picture in a few sentences.",
        "What colour is it?",
        "What could this image be used for? Explain.",
        "Is it bright or dark?",
        "Write a caption and then a longer description of the image.",
        "What is in this picture?",
        "What colours do you see, and where?",
        "Describe the image.",
    ]
    imgs = _images(args.requests, args.image_size) if args.image_size else [None] * args.requests

    def body(i):
        q = questions[i % len(questions)]
        content = (
            q
            if imgs[i] is None
            else [{"type": "image_url", "image_url": {"url": image_to_data_url(imgs[i])}}, {"type": "text", "text": q}]
        )
        return {"messages": [{"role": "user", "content": content}], "max_tokens": args.max_tokens, "temperature": 0}

    bodies = [body(i) for i in range(args.requests)]
    settings = dict(
        model_name="bench",
        max_tokens_cap=max(args.max_tokens, 1),
        max_concurrency=1024,
        batch_window_ms=args.batch_window_ms,
    )
    rows = []

    def report(row):
        rows.append(row)
        print(
            f"{row['setting']:<28} {row['requests']:>4} req  {row['wall_s']:7.1f} s  {row['requests_per_s']:6.2f} req/s  "
            f"{row['tokens_per_s']:7.1f} tok/s  p50 {row['p50_s']:6.2f} s  p95 {row['p95_s']:6.2f} s  "
            f"mean batch {row['mean_batch']:.1f}",
            flush=True,
        )

    def row_of(label, clients, wall, lat, toks, sizes):
        return {
            "setting": label,
            "clients": clients,
            "requests": len(lat),
            "wall_s": wall,
            "requests_per_s": len(lat) / wall,
            "tokens_per_s": sum(toks) / wall,
            "p50_s": statistics.median(lat),
            "p95_s": _percentile(lat, 0.95),
            "mean_batch": sum(sizes) / max(1, len(sizes)),
            "completion_tokens": sum(toks),
        }

    # in-process, one request at a time: what the HTTP layer adds shows against this
    from cambrian.serve.messages import build_conversation, sampling_from_request
    from cambrian.serve.schema import parse_request

    direct = ServeSettings(**settings)
    prepared = []
    for b in bodies:
        req = parse_request({"model": "bench", **b})
        prepared.append((*build_conversation(req, direct), sampling_from_request(req, direct)))
    model.generate_text([prepared[0][0]], [prepared[0][1]], sampling=prepared[0][2])  # warm-up
    lat, toks = [], []
    t0 = time.perf_counter()
    for msgs, ims, sp in prepared:
        t = time.perf_counter()
        run = model.generate_events([msgs], [ims], sampling=[sp])
        toks += [ev.completion_tokens for ev in run if ev.finished]
        lat.append(time.perf_counter() - t)
    report(row_of("in-process, one at a time", 1, time.perf_counter() - t0, lat, toks, [1] * len(lat)))

    plan = [(f"clients={c}" + (" (sequential)" if c == 1 else ""), c, args.max_batch_size) for c in levels]
    if args.off:
        plan.append((f"clients={max(levels)}, batching off", max(levels), 1))
    for label, clients, mbs in plan:
        with ServerThread(model, ServeSettings(max_batch_size=mbs, **settings)) as srv:
            run_level(srv.base_url, "bench", bodies[:2], 1)  # warm-up (connections, first-call costs)
            sched = srv.app.state.scheduler
            n0 = len(sched.step_sizes)
            wall, lat, toks = run_level(srv.base_url, "bench", bodies, clients)
            report(row_of(label, clients, wall, lat, toks, sched.step_sizes[n0:]))

    seq_row = next(r for r in rows if r["clients"] == 1 and r["setting"].startswith("clients="))
    seq = seq_row["requests_per_s"]
    top = next(r for r in rows if r["setting"].startswith(f"clients={max(levels)}") and "off" not in r["setting"])
    ratio = top["requests_per_s"] / seq
    print(
        f"\nspeed-up of {max(levels)} concurrent clients over sequential requests: {ratio:.2f}x "
        f"(goal >= 2x; tokens/s ratio {top['tokens_per_s'] / seq_row['tokens_per_s']:.2f}x)"
    )
    print(
        f"HTTP + queue overhead of a sequential request: "
        f"{(seq_row['p50_s'] - rows[0]['p50_s']) * 1000:.0f} ms at the median"
    )
    if args.off:
        off = rows[-1]["requests_per_s"]
        print(
            f"the same {max(levels)} clients with batching off: {off / seq:.2f}x sequential "
            f"(batching alone: {top['requests_per_s'] / off:.2f}x)"
        )
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"model": args.model, "rows": rows, "speedup": ratio, "load_before": load0[0], "load_after": load1[0]},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
