"""Scene-engine throughput: prints scenes/s for rendering alone and for render + files + annotations.

.venv/bin/python benchmarks/scenes.py [--n 100] [--size 256x256] [--workers 1] [--shadow]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from cambrian.data.scenes.engine import SceneConfig, SceneRenderer, scene_rng
from cambrian.data.scenes.render import render_scenes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", default="256x256")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shadow", action="store_true")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    cfg = SceneConfig(width=w, height=h, shadow=a.shadow)
    r = SceneRenderer(cfg)
    t = time.perf_counter()
    objs = 0
    for i in range(a.n):
        objs += len(r.render(scene_rng(0, "bench", i))["objects"])
    dt = time.perf_counter() - t
    r.close()
    print(
        f"render only     : {a.n / dt:7.1f} scenes/s  ({1000 * dt / a.n:.1f} ms/scene, {objs / a.n:.1f} objects/scene, {w}x{h})"
    )
    with tempfile.TemporaryDirectory() as d:
        s = render_scenes(d, a.n, seed=0, split="bench", config=cfg, workers=a.workers, progress=False)
    print(f"render + files  : {s['scenes_per_s']:7.1f} scenes/s  (workers={a.workers}, images+masks+depth+COCO+Omni3D)")


if __name__ == "__main__":
    main()
