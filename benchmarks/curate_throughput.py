"""Curation throughput and memory at Cambrian-10M-like scale (issue: >= 50k records/s on a 2-core machine, memory
flat in the number of records).

Generates a synthetic LLaVA mix (9 sources over 6 categories: short-answer VQA, multiple choice, counting,
OCR numbers, captions, multi-turn, text-only language data; ~4% exact duplicates, some of them through a copy of
an image under another path; a few bad lines), with images referenced by path: each source has 64 real small PNG
files, so content hashing runs and the per-path cache is exercised. Then curates it with a cap and category
ratios, each size in a fresh process (peak RSS = that process's ``ru_maxrss``).

Baseline in the same run: a naive in-memory curation (stdlib ``json`` into a list, a Python set of conversation
+ image-content keys, ``random.sample``) at the two smaller sizes, whose memory grows with the record count.

    python benchmarks/curate_throughput.py                       # sizes 500k and 2M (+ naive at 250k / 500k)
    python benchmarks/curate_throughput.py --sizes 100000,400000 --naive-sizes 50000,100000

Prints one table; the generated files are kept under --data-dir (reused when present).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = [  # name, category, share of the records, kind
    ("vqa_general", "general", 0.22, "vqa"),
    ("captions", "general", 0.10, "caption"),
    ("mc_science", "science", 0.06, "mc"),
    ("docvqa_like", "ocr", 0.16, "ocr"),
    ("chart_numbers", "ocr", 0.08, "number"),
    ("clevr_like", "counting", 0.14, "count"),
    ("math_mc", "math", 0.06, "mc"),
    ("multi_turn", "general", 0.06, "multi"),
    ("orca_like", "language", 0.12, "text"),
]
RATIOS = {"general": 34.52, "ocr": 27.22, "counting": 8.71, "math": 7.20, "science": 0.88, "language": 21.0}
N_IMAGES = 64
WORDS = ("red", "blue", "table", "chair", "two", "left", "right", "sign", "car", "tree", "person", "dog")


def _record(kind: str, i: int, img: str) -> dict:
    w = WORDS[i % len(WORDS)]
    if kind == "vqa":
        conv = [(f"<image>\nWhat is the colour of the {w} near the {WORDS[(i * 7) % 12]} (region {i})?", w)]
    elif kind == "caption":
        conv = [
            (
                f"<image>\nDescribe the image in detail (view {i}).",
                f"The photo shows a {w} next to a {WORDS[(i * 3) % 12]} on a sunny day; in the background there "
                f"are {i % 9 + 2} people walking past a {WORDS[(i * 5) % 12]} and a row of parked cars.",
            )
        ]
    elif kind == "mc":
        conv = [
            (
                f"<image>\nWhich object is closer to the camera in view {i}?\nA. the {w}\nB. the {WORDS[(i + 1) % 12]}\n"
                f"C. the {WORDS[(i + 2) % 12]}\nD. the {WORDS[(i + 3) % 12]}",
                "ABCD"[i % 4],
            )
        ]
    elif kind == "ocr":
        conv = [(f"<image>\nWhat is written on the {w} of item {i}?", f"{WORDS[(i * 11) % 12]} street {i % 97}")]
    elif kind == "number":
        conv = [(f"<image>\nWhat is the value of the {w} bar {i} in {1990 + i % 30}?", f"{(i * 37) % 1000 / 10:.1f}")]
    elif kind == "count":
        conv = [(f"<image>\nHow many {w} objects are there in box {i}?", str(i % 10))]
    elif kind == "multi":
        conv = [
            (f"<image>\nWhat is the {w} {i} doing?", f"It is standing near the {WORDS[(i * 5) % 12]}."),
            ("Is it daytime?", "Yes"),
            ("Why do you think so?", "The scene is brightly lit by the sun and the shadows are short."),
        ]
    else:
        conv = [
            (
                f"Explain why the {w} is important in {i % 50} words (essay {i}).",
                " ".join(WORDS[(i + k) % 12] for k in range(40 + i % 30)),
            )
        ]
    turns = []
    for q, a in conv:
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    rec = {"id": f"{kind}-{i}", "conversations": turns}
    if kind != "text":
        rec["image"] = img
    return rec


def generate(data_dir: Path, n: int) -> Path:
    """``data_dir/n{n}/recipe.yaml`` with its sources (reused when already generated)."""
    import numpy as np
    from PIL import Image

    d = data_dir / f"n{n}"
    if (d / "recipe.yaml").exists():
        return d / "recipe.yaml"
    d.mkdir(parents=True, exist_ok=True)
    img_root = d / "images"
    rng = np.random.default_rng(0)
    lines = ["sources:"]
    for name, cat, share, kind in SOURCES:
        sub = img_root / name
        sub.mkdir(parents=True, exist_ok=True)
        for k in range(N_IMAGES):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(sub / f"{k}.png")
        # a byte-identical copy under another name: records pointing at it duplicate those pointing at 0.png
        (sub / "copy_of_0.png").write_bytes((sub / "0.png").read_bytes())
        count = int(n * share)
        with open(d / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(count):
                if i % 25 == 24:  # exact duplicate of the previous record (4%)
                    src = i - 1
                else:
                    src = i
                img = f"{src % N_IMAGES}.png"
                if i % 25 == 24 and src % N_IMAGES == 0:
                    img = "copy_of_0.png"
                f.write(json.dumps(_record(kind, src, img)) + "\n")
                if i % 100_000 == 99_999:
                    f.write('{"id": broken\n')
        lines.append(f"  - {{name: {name}, path: {name}.jsonl, images: images/{name}, category: {cat}}}")
    lines += [
        "cap: " + str(max(1, int(n * 0.12))),
        "ratios: " + json.dumps(RATIOS),
        "system_prompts: true",
        "dedup: content",
        "image_root: images",
        "seed: 0",
    ]
    (d / "recipe.yaml").write_text("\n".join(lines) + "\n")
    return d / "recipe.yaml"


def _worker(mode: str, recipe: str, out: str) -> None:
    import resource

    t0 = time.perf_counter()
    if mode == "stream":
        from cambrian.data.curate import curate, load_recipe

        stats = curate(load_recipe(recipe), out, overwrite=True, progress=False, plots=False)
        n_in, n_out = stats["totals"]["records"], stats["totals"]["selected"]
    else:
        n_in, n_out = _naive(recipe, out)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": n_in, "selected": n_out, "seconds": dt, "rss_mib": rss}))


def _naive(recipe: str, out: str) -> tuple[int, int]:
    """Everything in memory: stdlib json into lists, a set of keys, random.sample per source (no ratios)."""
    import hashlib
    import random

    import yaml

    r = yaml.safe_load(Path(recipe).read_text())
    base = Path(recipe).parent
    seen, n_in, kept_all = set(), 0, []
    digests: dict[str, bytes] = {}
    for s in r["sources"]:
        recs = []
        with open(base / s["path"], encoding="utf-8") as f:
            for line in f:
                n_in += 1
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                img = rec.get("image")
                dig = b""
                if img:
                    p = str(base / s["images"] / img)
                    if p not in digests:
                        digests[p] = hashlib.blake2b(open(p, "rb").read(), digest_size=16).digest()
                    dig = digests[p]
                key = (json.dumps(rec["conversations"]), dig)
                if key in seen:
                    continue
                seen.add(key)
                recs.append(rec)
        kept_all += random.Random(0).sample(recs, min(len(recs), r["cap"]))
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "data.jsonl", "w", encoding="utf-8") as f:
        for rec in kept_all:
            f.write(json.dumps(rec) + "\n")
    return n_in, len(kept_all)


def _run(mode: str, recipe: Path, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, __file__, "--worker", mode, str(recipe), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500000,2000000", help="record counts for the streaming curation")
    ap.add_argument(
        "--naive-sizes", default="250000,500000", help="record counts for the in-memory baseline ('' = none)"
    )
    ap.add_argument("--data-dir", default="/tmp/cambrian-curate-bench")
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "RECIPE", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(*a.worker)
        return
    data_dir = Path(a.data_dir)
    rows = []
    load0 = os.getloadavg()
    for mode, sizes in (("stream", a.sizes), ("naive", a.naive_sizes)):
        for n in [int(x) for x in sizes.split(",") if x.strip()]:
            t0 = time.perf_counter()
            recipe = generate(data_dir, n)
            gen_s = time.perf_counter() - t0
            r = _run(mode, recipe, data_dir / f"out-{mode}-{n}")
            rows.append((mode, n, r, gen_s))
            print(
                f"  {mode:6s} {n:>9,}: {r['records'] / r['seconds']:>9,.0f} records/s, {r['seconds']:6.1f} s, "
                f"peak RSS {r['rss_mib']:7.1f} MiB (kept {r['selected']:,}; data generated/reused in {gen_s:.1f} s)",
                flush=True,
            )
    load1 = os.getloadavg()
    print()
    print(f"machine: {os.cpu_count()} cores, shared; load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    print("| pipeline | records | seconds | records/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for mode, _n, r, _ in rows:
        print(
            f"| {mode} | {r['records']:,} | {r['seconds']:.1f} | {r['records'] / r['seconds']:,.0f} | {r['rss_mib']:.0f} |"
        )
    st = [r for m, _, r, _ in rows if m == "stream"]
    nv = [r for m, _, r, _ in rows if m == "naive"]
    if len(st) >= 2:
        print(
            f"streaming: records x{st[-1]['records'] / st[0]['records']:.1f} -> peak RSS x"
            f"{st[-1]['rss_mib'] / st[0]['rss_mib']:.2f}"
        )
    if len(nv) >= 2:
        print(
            f"naive:     records x{nv[-1]['records'] / nv[0]['records']:.1f} -> peak RSS x"
            f"{nv[-1]['rss_mib'] / nv[0]['rss_mib']:.2f}"
        )
    if st and nv:
        print(
            f"throughput streaming / naive: {st[0]['records'] / st[0]['seconds'] / (nv[-1]['records'] / nv[-1]['seconds']):.2f}x"
        )


if __name__ == "__main__":
    main()
