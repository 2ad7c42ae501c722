"""The demo's steps, timed one by one (``run_demo``).

1. scenes: render train / test scenes (pybullet), check they share no scene, build CV-Bench-Synth from the test
   scenes (official rules), write stage-1 captions and stage-2 packed instruction records (+ easy-VQA train);
2. model: Cambrian-nano from its packaged parts (SmolLM2-135M-Instruct, EfficientNet-Lite0, DINOv2-S/14, SVA);
3. features: the frozen towers' outputs for every training image, once (batched, cached on disk);
4. stage 1: connector only (LLM frozen), captions;
5. stage 2: connector + LLM, packed CV-Bench-style questions and easy-VQA questions;
6. eval: CV-Bench-Synth and the easy-VQA test subset, vision enabled and disabled (same prompts, no image), and
   the image-use probe (gold-letter loss with the question's own image vs another scene's, ``image_use.py``);
7. chat: one answer about a scikit-image photo;
8. report: results.json, report.md, loss.png, accuracy.png.

Output folder (``--out``)::

    data/   scenes/{train,test}/, cvbench-synth/, stage1.jsonl, stage2.jsonl     (rendered inputs)
    cache/  features/                                                          (tower outputs)
    train/stage1/                                                              (stage-1 metrics)
    checkpoint/                                                                (final model + stage-2 metrics)
    eval/{vision,blind}/<bench>/predictions.jsonl, metrics.json
    chelsea.png, results.json, report.md, loss.png, accuracy.png
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

from ..utils.io import atomic_write_json, read_jsonl
from .config import DemoConfig

MARKER = ".cambrian-demo"
OWNED = ("data", "cache", "train", "checkpoint", "eval")
CHAT_PROMPT = "What is in this picture?"
CHAT_MAX_NEW_TOKENS = 64


def log(msg: str) -> None:
    print(f"[cambrian demo] {msg}", flush=True)


class Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str, title: str):
        log(f"--- {name}: {title}")
        t = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t, 2)
        log(f"    {name} done in {self.timings[name]:.1f} s")

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)


def prepare_out(out: Path) -> None:
    """Create ``out`` or reuse a previous demo folder (its owned sub-folders are cleared). A non-empty folder that
    is not a demo folder is refused, so ``--out`` can never wipe unrelated files."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} exists, is not empty and is not a demo folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("cambrian demo output\n")
    for sub in OWNED:
        if (out / sub).exists():
            shutil.rmtree(out / sub)


def resolve_device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {spec}: CUDA is not available on this machine")
    return spec


def count_answers(jsonl: Path) -> int:
    return sum(sum(1 for t in r["conversations"] if t["from"] == "gpt") for r in read_jsonl(jsonl))


def make_data(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    from ..cvbench.loader import load_cvbench
    from ..data.scenes import assert_disjoint, build_cvbench_synth, render_scenes
    from .data import SCENE_CONFIG, write_stage1, write_stage2

    d = out / "data"
    info: dict = {"scene_config": SCENE_CONFIG}
    info["train_scenes"] = render_scenes(d / "scenes" / "train", cfg.train_scenes, seed=cfg.seed, split="train",
                                         config=SCENE_CONFIG, progress=progress, save_depth=False)["scenes_per_s"]
    info["test_scenes"] = render_scenes(d / "scenes" / "test", cfg.test_scenes, seed=cfg.seed, split="test",
                                        config=SCENE_CONFIG, progress=progress, save_depth=False)["scenes_per_s"]
    assert_disjoint(d / "scenes" / "train", d / "scenes" / "test")
    rep = build_cvbench_synth(d / "scenes" / "test", d / "cvbench-synth", seed=cfg.seed)
    info["cvbench_synth"] = {"n": rep["n"], "per_task": rep["per_task"], "letter_balance": rep["letter_balance"]}
    info["stage1"] = write_stage1(d / "stage1.jsonl", d / "scenes" / "train", seed=cfg.seed, n=cfg.stage1_samples)
    info["stage2"] = write_stage2(d / "stage2.jsonl", d / "scenes" / "train", seed=cfg.seed, variants=cfg.scene_variants,
                                  easyvqa_images=cfg.easyvqa_train_images, box_prob=cfg.box_prob, max_turns=cfg.max_turns)
    info["cvbench_rows"] = [{"type": r["type"], "task": r["task"], "choices": list(r["choices"])}
                            for r in load_cvbench(str(d / "cvbench-synth"))]
    log(f"    CV-Bench-Synth: {rep['n']} questions {rep['per_task']}; stage 2: {info['stage2']['records']} records, "
        f"answers {info['stage2']['answers']}")
    return info


def evaluate(model, cfg: DemoConfig, out: Path, device: str, progress: bool) -> dict:
    import torch

    from ..eval.adapters import CambrianEvalModel
    from ..eval.api import get_benchmark
    from ..eval.runner import run_benchmarks
    from .features import cache_eval_features, uncache_eval_features
    from .image_use import image_use

    cv = get_benchmark("cvbench-synth")
    ev = get_benchmark("easyvqa", max_images=cfg.easyvqa_test_images, seed=cfg.seed)
    ev_samples = ev.load(None)
    samples = {"cvbench-synth": cv.load(str(out / "data" / "cvbench-synth")), "easyvqa": ev_samples}  # loaded once
    memo = cache_eval_features(model)
    em = CambrianEvalModel(model, name="cambrian-nano-demo")
    res = {}
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    try:
        with ctx:
            for vision, key in (("enabled", "vision"), ("disabled", "blind")):
                t = time.perf_counter()
                res[key] = run_benchmarks(em, [cv, ev], str(out / "data"), out / "eval" / key, batch_size=cfg.eval_batch,
                                          vision=vision, max_new_tokens=cfg.max_new_tokens, progress=progress,
                                          samples_by_bench=samples)
                res[f"{key}_seconds"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            res["image_use"] = image_use(model, samples["cvbench-synth"], seed=cfg.seed, batch_size=cfg.eval_batch)
            res["image_use_seconds"] = round(time.perf_counter() - t, 2)
    finally:
        uncache_eval_features(model)
    res["feature_memo"] = memo["stats"]
    res["easyvqa_chance"] = ev.score(ev_samples, {})["chance"]
    return res


def chat_once(model, out: Path) -> dict:
    from skimage import data as skdata
    from PIL import Image

    path = out / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    answer = model.chat(CHAT_PROMPT, [Image.open(path).convert("RGB")], max_new_tokens=CHAT_MAX_NEW_TOKENS)
    cmd = (f"cambrian chat --model {out / 'checkpoint'} --image {path} --prompt \"{CHAT_PROMPT}\" "
           f"--max-new-tokens {CHAT_MAX_NEW_TOKENS}")
    return {"command": cmd, "image": str(path), "prompt": CHAT_PROMPT, "answer": answer}


def run_demo(cfg: DemoConfig, quick: bool = False) -> dict:
    import torch

    from ..config import resolve_model_config
    from ..models.cambrian_model import CambrianModel
    from ..train.features import FeatureCache
    from .data import image_paths
    from .features import speed_up_towers
    from .report import check_targets, cvbench_chance, summarize, summary_table, write_report
    from .train import run_stage, stage_config

    out = Path(cfg.out)
    prepare_out(out)
    progress = cfg.progress
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    log(f"{'quick' if quick else 'default'} run on {device} ({torch.get_num_threads()} threads) -> {out}")

    with timer.step("scenes", f"render {cfg.train_scenes} train + {cfg.test_scenes} test scenes, CV-Bench-Synth, training data"):
        data = make_data(cfg, out, progress)
    with timer.step("model", f"build Cambrian-nano ({cfg.model}) from the packaged weights"):
        model = CambrianModel.from_config(resolve_model_config(cfg.model)).to(device)
        model.eval()
        speed_up_towers(model)
    with timer.step("features", "frozen-tower features of every training image (computed once)"):
        cache_root = out / "cache" / "features"
        cache = FeatureCache(cache_root, list(model.encoders))
        paths = image_paths(out / "data" / "stage1.jsonl") + image_paths(out / "data" / "stage2.jsonl")
        data["feature_images"] = cache.build(paths, device, progress=progress)

    training = {}
    with timer.step("stage1", "connector only (LLM frozen), scene captions"):
        c1 = stage_config(1, out / "data" / "stage1.jsonl", out / "train" / "stage1", lr=cfg.stage1_lr,
                          sva_lr=cfg.stage1_sva_lr, micro_batch=cfg.stage1_batch, global_batch=cfg.stage1_batch,
                          epochs=1, max_steps=None, seed=cfg.seed, feature_cache=str(cache_root),
                          warmup_ratio=cfg.warmup_ratio, progress=progress)
        training["stage1"] = run_stage(model, c1)
        training["stage1"]["answers"] = count_answers(out / "data" / "stage1.jsonl")
        for f in ("model.safetensors",):  # stage 2 continues in memory; the stage-1 weights are not needed again
            (out / "train" / "stage1" / f).unlink(missing_ok=True)
    with timer.step("stage2", "connector + LLM, packed CV-Bench-style and easy-VQA questions"):
        cap = cfg.stage2_max_samples
        c2 = stage_config(2, out / "data" / "stage2.jsonl", out / "checkpoint", lr=cfg.stage2_lr,
                          sva_lr=cfg.stage2_sva_lr, micro_batch=cfg.stage2_micro_batch, global_batch=cfg.stage2_batch,
                          epochs=1, max_steps=(cap // cfg.stage2_batch) if cap else None, seed=cfg.seed,
                          feature_cache=str(cache_root), warmup_ratio=cfg.warmup_ratio, progress=progress)
        training["stage2"] = run_stage(model, c2)
        total = count_answers(out / "data" / "stage2.jsonl")
        n_rec = data["stage2"]["records"]
        # answers seen: exact when every record was used, else pro rata (records have similar turn counts)
        training["stage2"]["answers"] = int(round(total * min(1.0, training["stage2"]["samples"] / max(1, n_rec))))

    with timer.step("eval", "CV-Bench-Synth + easy-VQA, vision enabled and disabled; image-use probe"):
        ev = evaluate(model, cfg, out, device, progress)
    with timer.step("chat", "one answer about a scikit-image photo"):
        chat = chat_once(model, out)

    vision = summarize(ev["vision"]["cvbench-synth"], ev["vision"]["easyvqa"])
    blind = summarize(ev["blind"]["cvbench-synth"], ev["blind"]["easyvqa"])
    chance = cvbench_chance(data.pop("cvbench_rows"))
    chance["easyvqa"] = ev["easyvqa_chance"]
    timings = dict(timer.timings)
    timings["eval_vision"] = ev["vision_seconds"]
    timings["eval_blind"] = ev["blind_seconds"]
    timings["eval_image_use"] = ev["image_use_seconds"]
    results = {
        "vision": vision, "blind": blind, "chance": chance,
        "targets": check_targets(vision, blind, chance, quick), "image_use": ev["image_use"],
        "timings": {}, "training": training, "data": data, "chat": chat,
        "eval": {"feature_memo": ev["feature_memo"], "max_new_tokens": cfg.max_new_tokens},
        "config": {**cfg.to_dict(), "quick": quick},
        "env": {"device": device, "threads": torch.get_num_threads(), "precision": "bf16 autocast" if device.startswith("cuda") else "fp32",
                "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count()},
    }
    with timer.step("report", "results.json, report.md, PNGs"):
        results["timings"] = {**timings, "total": timer.total()}
        paths = write_report(out, results)
    results["timings"]["report"] = timer.timings["report"]
    results["timings"]["total"] = timer.total()
    atomic_write_json(out / "results.json", results)  # final timings
    from .report import render_markdown

    from ..utils.io import atomic_write_text

    atomic_write_text(out / "report.md", render_markdown(results))
    print()
    print(summary_table(results))
    print()
    for name, t in results["targets"].items():
        print(f"target {'OK  ' if t['ok'] else 'MISS'} {name}: {t['value'] if t['value'] is None else round(t['value'], 4)}")
    print()
    print(f"report: {paths['report']}  results: {paths['results']}  plots: {paths['loss_png']}, {paths['accuracy_png']}")
    print("try the trained model:")
    print(f"  {chat['command']}")
    print(f"  -> {chat['answer']}")
    return results


def load_results(out: str | os.PathLike) -> dict:
    return json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
