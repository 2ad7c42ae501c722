"""The demo's steps, timed one by one (``run_demo``).

1. model: Cambrian-nano from its packaged parts (SmolLM2-135M-Instruct, EfficientNet-Lite0, DINOv2-S/14, SVA);
   in-LLM SVA off unless ``in_llm_sva``;
2. scenes: render train / test scenes (pybullet), check they share no scene, build CV-Bench-Synth (official rules)
   and synth-attribute from the test scenes, write grounding targets (scene masks + easy-VQA images) and stage-2
   packed instruction records (+ optional stage-1 captions);
3. features: the frozen towers' outputs for every training image, once (batched, cached on disk);
4. ground: connector only, visual tokens pulled onto the LLM's word embeddings per cell (``stage: ground``);
5. stage 1 (optional, ``stage1_samples``): connector only, captions;
6. stage 2: the LLM on packed scene / easy-VQA questions (the connector too with ``stage2_train_connector``);
7. eval: CV-Bench-Synth, synth-attribute and easy-VQA with the own image, another image's tokens, no image; the
   gold-answer loss probes (``image_use.py``) and the grounded-token decoding (``grounding_probe.py``);
8. likelihood (``likelihood: true``): the same questions and conditions answered by option likelihood (the most
   likely option, ``cambrian.eval.likelihood``; not the official score, reported apart);
9. chat: one answer about a held-out easy-VQA image;
10. report: results.json, report.md, loss.png, accuracy.png (+ likelihood.png); every own / other / blind figure
    with its 95% bootstrap interval and the paired own - other / own - blind differences (``stats.py``).

Output folder (``--out``)::

    data/   scenes/{train,test}/, cvbench-synth/, synth-attribute/, ground.jsonl, stage2.jsonl (+ stage1.jsonl)
    cache/  features/                                                          (tower outputs)
    train/ground/ (+ train/stage1/)                                            (metrics)
    checkpoint/                                                                (final model + stage-2 metrics)
    eval/{own,other,blind}/<bench>/predictions.jsonl, metrics.json
    eval/question_scores.jsonl                                                 (per question: own, other, blind)
    eval/likelihood/{own,other,blind}/<bench>/likelihood.jsonl, metrics.likelihood*.json
    eval/likelihood/question_scores.jsonl                            (per question, option likelihood: own, ...)
    chat.png, results.json, report.md, loss.png, accuracy.png, likelihood.png
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from pathlib import Path

from ..typed import ConfigError
from ..utils.io import read_jsonl
from ..utils.log import get_logger
from .config import PRESETS, DemoConfig

MARKER = ".cambrian-demo"
OWNED = ("data", "cache", "train", "checkpoint", "eval")
CHAT_MAX_NEW_TOKENS = 64


def log(msg: str) -> None:
    get_logger("demo").info(msg)


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


def cvbench_test_set(cfg: DemoConfig, scene_dir: Path, out_dir: Path) -> tuple[dict, dict]:
    """CV-Bench-Synth from the test scenes, official rules, at most ``cfg.cvbench_max_per_image`` questions per image
    and task (the demo's caps updated by the given ones; None: the official caps). Returns (the summary kept in
    results.json, the builder's report)."""
    from ..cvbench.builder import PER_IMAGE_DEFAULTS, BuildParams, build_cvbench_synth
    from .config import DEMO_PER_IMAGE

    caps = None
    if cfg.cvbench_max_per_image is not None:
        caps = {"max_per_image": {**DEMO_PER_IMAGE, **cfg.cvbench_max_per_image}}
    rep = build_cvbench_synth(scene_dir, out_dir, seed=cfg.seed, params=caps)
    info = {
        "n": rep["n"],
        "per_task": rep["per_task"],
        "letter_balance": rep["letter_balance"],
        "scenes": cfg.test_scenes,
        "max_per_image": BuildParams.from_dict(caps).max_per_image,  # the caps used
        "official_max_per_image": dict(PER_IMAGE_DEFAULTS),  # `cambrian cvbench`'s
    }
    return info, rep


def make_data(cfg: DemoConfig, out: Path, progress: bool, grid: int) -> dict:
    from ..cvbench.loader import load_cvbench
    from ..data.scenes import assert_disjoint, render_scenes
    from ..eval.benchmarks.synth_attribute import build_synth_attribute
    from .data import SCENE_CONFIG, write_grounding, write_stage1, write_stage2

    d = out / "data"
    info: dict = {"scene_config": SCENE_CONFIG}
    info["train_scenes"] = render_scenes(
        d / "scenes" / "train",
        cfg.train_scenes,
        seed=cfg.seed,
        split="train",
        config=SCENE_CONFIG,
        progress=progress,
        save_depth=False,
    )["scenes_per_s"]
    info["test_scenes"] = render_scenes(
        d / "scenes" / "test",
        cfg.test_scenes,
        seed=cfg.seed,
        split="test",
        config=SCENE_CONFIG,
        progress=progress,
        save_depth=False,
    )["scenes_per_s"]
    assert_disjoint(d / "scenes" / "train", d / "scenes" / "test")
    info["cvbench_synth"], rep = cvbench_test_set(cfg, d / "scenes" / "test", d / "cvbench-synth")
    info["synth_attribute"] = build_synth_attribute(
        d / "scenes" / "test", d / "synth-attribute", seed=cfg.seed, colors=SCENE_CONFIG["colors"]
    )
    info["grounding"] = write_grounding(
        d / "ground.jsonl",
        d / "scenes" / "train",
        grid,
        seed=cfg.seed,
        easyvqa_images=cfg.ground_easyvqa_images,
        split_words=cfg.ground_split_words,
        count_words=cfg.ground_count_words,
        position_words=cfg.ground_position_words,
        position_of=cfg.ground_position_of,
    )
    if cfg.stage1_samples:
        info["stage1"] = write_stage1(d / "stage1.jsonl", d / "scenes" / "train", seed=cfg.seed, n=cfg.stage1_samples)
    info["stage2"] = write_stage2(
        d / "stage2.jsonl",
        d / "scenes" / "train",
        seed=cfg.seed,
        variants=cfg.scene_variants,
        easyvqa_images=cfg.easyvqa_train_images,
        box_prob=cfg.box_prob,
        max_turns=cfg.max_turns,
        attribute_turns=cfg.attribute_turns,
        reasoning=cfg.reasoning,
        grid=grid,
        position_turns=cfg.position_turns,
    )
    info["cvbench_rows"] = [
        {"type": r["type"], "task": r["task"], "choices": list(r["choices"])}
        for r in load_cvbench(str(d / "cvbench-synth"))
    ]
    log(
        f"    CV-Bench-Synth: {rep['n']} questions {rep['per_task']}; synth-attribute: {info['synth_attribute']['n']} "
        f"{info['synth_attribute']['per_type']}; grounding: {info['grounding']['records']} images; stage 2: "
        f"{info['stage2']['records']} records, answers {info['stage2']['answers']}"
    )
    return info


CONDITIONS = ("own", "other", "blind")


def evaluate(model, cfg: DemoConfig, out: Path, device: str, progress: bool) -> dict:
    """Every benchmark three times: with the question's own image, with another scene's/image's visual tokens under
    the same prompt, and with no image; plus the gold-answer loss probe (own vs other image)."""
    import torch

    from ..data.scenes.engine import SceneConfig
    from ..eval.adapters import CambrianEvalModel
    from ..eval.api import get_benchmark
    from ..eval.runner import run_benchmarks
    from .data import SCENE_CONFIG
    from .features import EvalFeatureMemo
    from .grounding_probe import grounding_probe
    from .image_use import image_use, with_other_images
    from .stats import question_labels, read_question_scores

    benches = [
        get_benchmark("cvbench-synth"),
        get_benchmark("synth-attribute"),
        get_benchmark("easyvqa", max_images=cfg.easyvqa_test_images, seed=cfg.seed),
    ]
    own = {b.name: b.load(None if b.name == "easyvqa" else str(out / "data" / b.name)) for b in benches}  # loaded once
    samples = {"own": own, "blind": own, "other": {k: with_other_images(v, cfg.seed) for k, v in own.items()}}
    memo = EvalFeatureMemo()
    em = CambrianEvalModel(model, name="cambrian-nano-demo")
    res: dict = {"metrics": {}, "seconds": {}}
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    with model.features_from(memo), ctx:
        t = time.perf_counter()
        world = SceneConfig.from_dict(SCENE_CONFIG)
        res["grounding_probe"] = grounding_probe(
            model,
            out / "data" / "scenes" / "test",
            world.colors,
            world.shapes,
            positions=cfg.ground_position_of if cfg.ground_position_words else None,
        )
        res["seconds"]["grounding_probe"] = round(time.perf_counter() - t, 2)
        for cond in CONDITIONS:
            t = time.perf_counter()
            res["metrics"][cond] = run_benchmarks(
                em,
                benches,
                str(out / "data"),
                out / "eval" / cond,
                batch_size=cfg.eval_batch,
                vision="disabled" if cond == "blind" else "enabled",
                max_new_tokens=cfg.max_new_tokens,
                progress=progress,
                samples_by_bench=samples[cond],
            )
            res["seconds"][cond] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        res["image_use"] = {
            "cvbench-synth": image_use(
                model, own["cvbench-synth"], max_items=cfg.probe_items, seed=cfg.seed, batch_size=cfg.eval_batch
            ),
            "easyvqa": image_use(
                model,
                own["easyvqa"],
                max_items=cfg.probe_items,
                seed=cfg.seed,
                batch_size=cfg.eval_batch,
                gold=lambda s: str(s.answer),
            ),
        }
        res["seconds"]["image_use"] = round(time.perf_counter() - t, 2)
    res["feature_memo"] = memo.stats
    # per-question scores of every condition (the same questions, scored against the same answers): the intervals
    res["questions"] = {}
    for b in benches:
        q = question_labels(b.name, own[b.name])
        for cond in CONDITIONS:
            q[cond] = read_question_scores(b, own[b.name], out / "eval" / cond / b.name)
        res["questions"][b.name] = q
    res["easyvqa_samples"] = own["easyvqa"]  # for the chat step (not part of the results)
    res["loaded"] = {"benches": benches, "samples": samples, "memo": memo, "em": em}  # for the likelihood step
    res["chance"] = {b.name: b.score(own[b.name], {}).get("chance") for b in benches if b.name != "cvbench-synth"}
    return res


def evaluate_likelihood(model, cfg: DemoConfig, out: Path, device: str, progress: bool, loaded: dict) -> dict:
    """The multiple-choice questions ``evaluate`` loaded (the same samples, the same other-image pairing, the same
    feature memo) answered by option likelihood under own / other / blind: every option scored as the reply to the
    prompt, the most likely one taken (``cambrian.eval.likelihood.run_likelihood``; files under eval/likelihood/).
    Returns ``{"metrics": {cond: {bench: {reading: metrics}}}, "seconds": {cond: s}, "questions": {bench: ...}}``,
    the per-question scores of the ``likelihood`` reading for the intervals."""
    import torch

    from ..eval.likelihood import run_likelihood
    from .stats import question_labels, read_likelihood_scores

    benches, samples = loaded["benches"], loaded["samples"]
    benches = [b for b in benches if any(b.mc_options(s) is not None for s in samples["own"][b.name])]
    root = out / "eval" / "likelihood"
    res: dict = {"metrics": {}, "seconds": {}, "questions": {}}
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    with model.features_from(loaded["memo"]), ctx:
        for cond in CONDITIONS:
            t = time.perf_counter()
            res["metrics"][cond] = run_likelihood(
                loaded["em"],
                benches,
                None,
                root / cond,
                batch_size=cfg.eval_batch,
                vision="disabled" if cond == "blind" else "enabled",
                progress=progress,
                samples_by_bench={b.name: samples[cond][b.name] for b in benches},
            )
            res["seconds"][cond] = round(time.perf_counter() - t, 2)
    for b in benches:
        own = samples["own"][b.name]
        q = question_labels(b.name, own)
        for cond in CONDITIONS:  # scored against the own samples' answers (the other-image samples keep them)
            q[cond] = read_likelihood_scores(b, own, root / cond / b.name)
        res["questions"][b.name] = q
    return res


def chat_once(model, out: Path, samples: list) -> dict:
    """One answer about a held-out easy-VQA test image whose answer is visible (its colour), and the command to ask
    more."""
    from ..prompts import SHORT

    s = next((x for x in samples if x.meta.get("category") == "color"), samples[0])
    path = out / "chat.png"
    s.load_images()[0].save(path)
    question = "What color is the shape?" if s.meta.get("category") == "color" else s.prompt.split("\n")[0]
    prompt = f"{question}\n{SHORT}"
    answer = model.chat(prompt, [str(path)], max_new_tokens=CHAT_MAX_NEW_TOKENS)
    cmd = (
        f"cambrian chat --model {out / 'checkpoint'} --image {path} --prompt $'{question}\\n{SHORT}' "
        f"--max-new-tokens {CHAT_MAX_NEW_TOKENS}"
    )
    return {
        "command": cmd,
        "image": str(path),
        "prompt": prompt,
        "answer": answer,
        "truth": s.answer if s.meta.get("category") == "color" else None,
    }


def build_model(cfg: DemoConfig, device: str):
    from ..models.cambrian_model import CambrianModel
    from ..presets.models import resolve_model_config
    from .features import speed_up_towers

    mc = resolve_model_config(cfg.model)
    if not cfg.in_llm_sva:
        # grounding trains the pre-LLM tokens only; untrained in-LLM samplers would overwrite the image positions'
        # hidden states after layer 0 with a random MLP's output (SVA layers add their output to the query)
        mc.connector.num_llm_layers = 0
    model = CambrianModel.from_config(mc).to(device)
    model.eval()
    speed_up_towers(model)
    return model


def run_demo(cfg: DemoConfig, preset: str = "default") -> dict:
    """Run the demo with ``cfg`` (built by ``make_config(preset=...)``); ``preset`` names it in the log, the
    report and results.json; the ``quick`` preset is checked against the smoke-run targets."""
    import torch

    from ..train.features import FeatureCache
    from .data import image_paths
    from .report import check_targets, cvbench_chance, image_use_accuracy, write_report
    from .stats import image_use_statistics, write_question_scores
    from .train import run_stage, stage_config

    if preset not in PRESETS:
        raise ConfigError(f"demo preset {preset!r}: choose one of {', '.join(PRESETS)}")
    quick = preset == "quick"
    out = Path(cfg.out)
    prepare_out(out)
    progress = cfg.progress
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    timer = Timer()
    log(f"{preset} run on {device} ({torch.get_num_threads()} threads) -> {out}")

    with timer.step("model", f"build Cambrian-nano ({cfg.model}) from the packaged weights"):
        model = build_model(cfg, device)
    grid = model.connector.config.grid
    with timer.step(
        "scenes",
        f"render {cfg.train_scenes} train + {cfg.test_scenes} test scenes, CV-Bench-Synth, "
        "synth-attribute, grounding targets, training data",
    ):
        data = make_data(cfg, out, progress, grid)
    d = out / "data"
    files = {"ground": d / "ground.jsonl", "stage1": d / "stage1.jsonl", "stage2": d / "stage2.jsonl"}
    with timer.step("features", "frozen-tower features of every training image (computed once)"):
        cache_root = out / "cache" / "features"
        cache = FeatureCache(cache_root, list(model.encoders))
        paths = [p for f in files.values() if f.exists() for p in image_paths(f)]
        data["feature_images"] = cache.build(paths, device, progress=progress)

    training = {}
    common = dict(seed=cfg.seed, feature_cache=str(cache_root), progress=progress)
    with timer.step("ground", "grounding: connector only, visual tokens -> the LLM's embeddings of the words per cell"):
        cg = stage_config(
            "ground",
            files["ground"],
            out / "train" / "ground",
            lr=cfg.ground_lr,
            sva_lr=cfg.ground_sva_lr,
            micro_batch=cfg.ground_batch,
            global_batch=cfg.ground_batch,
            epochs=cfg.ground_epochs,
            max_steps=None,
            warmup_ratio=cfg.warmup_ratio,
            grounding={"objective": cfg.ground_objective},
            **common,
        )
        training["ground"] = run_stage(model, cg)
        (out / "train" / "ground" / "model.safetensors").unlink(missing_ok=True)  # continues in memory
    if cfg.stage1_samples:
        with timer.step("stage1", "connector only (LLM frozen), scene captions"):
            c1 = stage_config(
                1,
                files["stage1"],
                out / "train" / "stage1",
                lr=cfg.stage1_lr,
                sva_lr=cfg.stage1_sva_lr,
                micro_batch=cfg.stage1_batch,
                global_batch=cfg.stage1_batch,
                epochs=1,
                max_steps=None,
                warmup_ratio=cfg.warmup_ratio,
                **common,
            )
            training["stage1"] = run_stage(model, c1)
            training["stage1"]["answers"] = count_answers(files["stage1"])
            (out / "train" / "stage1" / "model.safetensors").unlink(missing_ok=True)
    with timer.step("stage2", "LLM on packed scene and easy-VQA questions, reading the grounded tokens"):
        cap = cfg.stage2_max_samples
        c2 = stage_config(
            2,
            files["stage2"],
            out / "checkpoint",
            lr=cfg.stage2_lr,
            sva_lr=cfg.stage2_sva_lr,
            micro_batch=cfg.stage2_micro_batch,
            global_batch=cfg.stage2_batch,
            epochs=1,
            max_steps=(cap // cfg.stage2_batch) if cap else None,
            warmup_ratio=cfg.warmup_ratio,
            trainable=None if cfg.stage2_train_connector else ["llm."],
            **common,
        )
        training["stage2"] = run_stage(model, c2)
        total = count_answers(files["stage2"])
        n_rec = data["stage2"]["records"]
        # answers seen: exact when every record was used, else pro rata (records have similar turn counts)
        training["stage2"]["answers"] = int(round(total * min(1.0, training["stage2"]["samples"] / max(1, n_rec))))

    with timer.step(
        "eval",
        "CV-Bench-Synth, synth-attribute, easy-VQA with the own image, another image, no image; gold-answer loss probe",
    ):
        ev = evaluate(model, cfg, out, device, progress)
    loaded = ev.pop("loaded")
    lik = None
    if cfg.likelihood:
        with timer.step(
            "likelihood",
            "the multiple-choice questions by option likelihood (not the official score), own / other / no image",
        ):
            lik = evaluate_likelihood(model, cfg, out, device, progress, loaded)
    del loaded
    with timer.step("chat", "one answer about a held-out easy-VQA image"):
        chat = chat_once(model, out, ev.pop("easyvqa_samples"))

    acc = image_use_accuracy(ev["metrics"])
    stats = image_use_statistics(ev["questions"])
    write_question_scores(out / "eval" / "question_scores.jsonl", ev.pop("questions"))
    chance = {"cvbench-synth": cvbench_chance(data.pop("cvbench_rows")), **ev["chance"]}
    timings = dict(timer.timings)
    timings.update({f"eval_{k}": v for k, v in ev["seconds"].items()})
    likelihood = {}
    if lik is not None:
        timings.update({f"likelihood_{k}": v for k, v in lik["seconds"].items()})
        ls = image_use_statistics(lik["questions"])
        write_question_scores(out / "eval" / "likelihood" / "question_scores.jsonl", lik["questions"])
        likelihood = {  # apart from the official figures: never in image_use_accuracy or the targets
            "likelihood_accuracy": ls["accuracy"],
            "likelihood_intervals": ls["intervals"],
            "likelihood_n": ls["n"],
            "likelihood_differences": ls["differences"],
            "likelihood_metrics": lik["metrics"],
        }
    results = {
        "image_use_accuracy": acc,
        "image_use_intervals": stats["intervals"],
        "image_use_n": stats["n"],
        "image_use_differences": stats["differences"],
        "statistics": stats["method"],
        **likelihood,
        "image_use": ev["image_use"],
        "grounding_probe": ev["grounding_probe"],
        "chance": chance,
        "metrics": ev["metrics"],
        "targets": check_targets(acc, ev["image_use"], chance, quick, stats["intervals"]),
        "timings": {},
        "training": training,
        "data": data,
        "chat": chat,
        "eval": {"feature_memo": ev["feature_memo"], "max_new_tokens": cfg.max_new_tokens},
        "config": {**cfg.to_dict(), "quick": quick, "preset": preset},
        "env": {
            "device": device,
            "threads": torch.get_num_threads(),
            "precision": "bf16 autocast" if device.startswith("cuda") else "fp32",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
    }
    with timer.step("report", "results.json, report.md, PNGs"):
        results["timings"] = {**timings, "total": timer.total()}
        paths = write_report(out, results)
    results["timings"]["report"] = timer.timings["report"]
    results["timings"]["total"] = timer.total()
    results["paths"] = {k: str(v) for k, v in write_report(out, results, plots=False).items()}  # final timings
    return results


def console_summary(results: dict) -> str:
    """What ``cambrian demo`` prints at the end: the accuracy table, the targets, where the report is, and the
    chat command with its answer."""
    from .report import summary_table

    paths, chat = results["paths"], results["chat"]
    lines = ["", summary_table(results), ""]
    for name, t in results["targets"].items():
        lines.append(
            f"target {'OK  ' if t['ok'] else 'MISS'} {name}: "
            f"{t['value'] if t['value'] is None else round(t['value'], 4)}"
        )
    lines += [
        "",
        f"report: {paths['report']}  results: {paths['results']}  plots: {paths['loss_png']}, {paths['accuracy_png']}"
        + (f", {paths['likelihood_png']}" if paths.get("likelihood_png") else ""),
        "try the trained model:",
        f"  {chat['command']}",
        f"  -> {chat['answer']}" + (f"   (truth: {chat['truth']})" if chat.get("truth") else ""),
    ]
    return "\n".join(lines)
