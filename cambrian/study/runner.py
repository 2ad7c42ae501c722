"""Running a study: every run is an ordinary training run directory, trained by the project's trainer and evaluated
by its harness, in this process (``run_study``) or through the equivalent commands (``print_commands``).

Layout of ``OUT``::

    study.yaml                         the resolved study (what was asked)
    data/                              the shared data (data: nano), with data.json once complete
    cache/features/<tower>/            training-image features per frozen tower (the trainer's FeatureCache)
    cache/eval-features/<tower>/       evaluation-image features per frozen tower (fp32)
    runs/<run id>/
        run.json                       axes, model, stages, timings (seconds per stage / eval / total)
        model.json                     the run's model config (the first stage's model:)
        <stage>.yaml                   the stage's recipe (`cambrian train <stage>.yaml`)
        <stage>/                       the stage's output dir (metrics.jsonl, train_config.yaml, the model)
        eval/enabled/, eval/disabled/  `cambrian eval run` dirs (predictions, metrics per benchmark)
    study.csv, study.json, report.md, categories.png, vision.png, ranking.png

Resume: a stage whose output dir holds a complete model (``config.json`` is written last) is not trained again; a
stage that was interrupted starts over (``overwrite``); evaluation resumes per sample (the harness). A run is
complete when its last stage's model and every benchmark's metrics (both vision settings) exist. After a run is
complete the models of its earlier stages are deleted (``keep_stage_models`` keeps them).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from pathlib import Path

import yaml

from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.log import get_logger
from .spec import RunPlan, StudySpec, expand, fill

log = get_logger("study")


def run_dir(out: Path, plan: RunPlan) -> Path:
    return Path(out) / "runs" / plan.id


def data_root(spec: StudySpec, out: Path) -> str:
    return str((Path(out) / "data").resolve()) if spec.data == "nano" else str(spec.data_root)


def connector_grid(spec: StudySpec) -> int:
    from .spec import base_model_mapping

    n = int((base_model_mapping(spec).get("connector") or {}).get("image_token_len", 576))
    return int(round(n**0.5))


def prepare_data(spec: StudySpec, out: Path, progress: bool = True) -> str:
    if spec.data == "nano":
        from .data import build_nano_data

        build_nano_data(out, spec.data_settings, connector_grid(spec), progress=progress)
    return data_root(spec, out)


# ---- recipes -------------------------------------------------------------------------------------------------
def _count_records(entries) -> int:
    n = 0
    for e in entries or []:
        path = e["path"] if isinstance(e, dict) else e
        with open(path, "rb") as f:
            n += sum(1 for line in f if line.strip())
    return n


def stage_recipes(spec: StudySpec, plan: RunPlan, out: Path, root: str) -> list[tuple[str, dict]]:
    """The run's stages as complete ``TrainConfig`` mappings (placeholders filled, model / output_dir chained)."""
    rd = run_dir(out, plan).resolve()
    ph = {"data": root, "run": str(rd), "cache": str((Path(out) / "cache" / "features").resolve())}
    prev = rd / "model.json"
    recipes = []
    for name, recipe in plan.stages:
        r = fill(recipe, ph)
        adapter = r.pop("study_adapter_data", None)
        if adapter is not None:
            n = _count_records(r.get("data"))
            take = round(adapter * n) if adapter <= 1 else int(adapter)
            r["mixing_total"] = max(1, min(n, take))
            r.setdefault("mixing_ratios", {"general": 1.0})
        r["model"] = str(prev)
        r["output_dir"] = str(rd / name)
        recipes.append((name, r))
        prev = rd / name
    return recipes


def write_run_files(spec: StudySpec, plan: RunPlan, out: Path, root: str) -> list[tuple[str, dict]]:
    """model.json, one <stage>.yaml per stage and run.json (kept timings) for the run."""
    from ..presets.models import config_from_mapping
    from ..train.config import TrainConfig

    rd = run_dir(out, plan)
    rd.mkdir(parents=True, exist_ok=True)
    config_from_mapping(plan.model, where=f"run {plan.id}: model").save(rd / "model.json")
    recipes = stage_recipes(spec, plan, out, root)
    for name, r in recipes:
        TrainConfig.from_dict(r, f"run {plan.id}: stage {name}")  # every mistake surfaces before any training
        atomic_write_text(rd / f"{name}.yaml", yaml.safe_dump(r, sort_keys=False))
    info = read_run_json(rd)
    info.update(
        {
            "id": plan.id,
            "study": spec.name,
            "axes": plan.axes,
            "towers_label": plan.towers_label,
            "skipped_stages": plan.skipped_stages,
            "stages": [n for n, _ in recipes],
        }
    )
    info.setdefault("timings", {})
    atomic_write_json(rd / "run.json", info)
    return recipes


def read_run_json(rd: Path) -> dict:
    try:
        return json.loads((Path(rd) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ---- state ---------------------------------------------------------------------------------------------------
def model_complete(d: Path) -> bool:
    return (Path(d) / "config.json").exists() and (Path(d) / "model.safetensors").exists()


def eval_complete(spec: StudySpec, rd: Path) -> bool:
    for vision in spec.eval.vision:
        for bench, opts in spec.benchmarks.items():
            bd = rd / "eval" / vision / bench
            if not (bd / "metrics.json").exists():
                return False
            try:
                ident = json.loads((bd / "run_identity.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            if (ident.get("options") or {}) != _bench_options(bench, opts):
                return False
    return True


def _bench_options(bench: str, opts: dict) -> dict:
    from ..eval.api import get_benchmark

    return json.loads(json.dumps(get_benchmark(bench, **(opts or {})).opts, default=str))


def run_complete(spec: StudySpec, plan: RunPlan, out: Path) -> bool:
    rd = run_dir(out, plan)
    return model_complete(rd / plan.stages[-1][0]) and eval_complete(spec, rd)


# ---- one run -------------------------------------------------------------------------------------------------
def _add_time(rd: Path, key: str, seconds: float) -> None:
    info = read_run_json(rd)
    t = info.setdefault("timings", {})
    t[key] = round(t.get(key, 0.0) + seconds, 2)
    t["total"] = round(sum(v for k, v in t.items() if k != "total"), 2)
    atomic_write_json(rd / "run.json", info)


def execute_run(spec: StudySpec, plan: RunPlan, out: Path, root: str, progress: bool = True):
    """Train the run's missing stages and evaluate what is missing (own image, vision disabled)."""
    from ..train.callbacks import MetricsCallback
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer

    rd = run_dir(out, plan)
    recipes = write_run_files(spec, plan, out, root)
    last = Path(recipes[-1][1]["output_dir"])
    done_from = next((i for i in range(len(recipes) - 1, -1, -1) if model_complete(recipes[i][1]["output_dir"])), -1)
    for i, (name, r) in enumerate(recipes):
        if i <= done_from:
            continue
        log.info(f"[{plan.id}] stage {name}")
        t0 = time.perf_counter()
        cfg = TrainConfig.from_dict({**r, "overwrite": True, "progress": progress})
        trainer = Trainer(cfg, callbacks=[MetricsCallback()])
        summary = trainer.train()
        info = read_run_json(rd)
        info.setdefault("training", {})[name] = {
            "steps": trainer.total_steps,
            "samples": int(trainer.state.get("samples_seen", 0)),
            "final_loss": summary.get("loss"),
            "bad_counts": summary.get("bad_counts", {}),
        }
        atomic_write_json(rd / "run.json", info)
        del trainer
        _add_time(rd, f"train_{name}", time.perf_counter() - t0)
    if not eval_complete(spec, rd):
        evaluate_run(spec, plan, out, root, last, progress)
    if not spec.keep_stage_models:
        for _, r in recipes[:-1]:
            w = Path(r["output_dir"]) / "model.safetensors"
            if w.exists() and model_complete(last):
                w.unlink()


def load_benches(spec: StudySpec):
    from ..eval.api import get_benchmark

    return [get_benchmark(name, **(opts or {})) for name, opts in spec.benchmarks.items()]


def evaluate_run(spec: StudySpec, plan: RunPlan, out: Path, root: str, model_dir: Path, progress: bool = True):
    import torch

    from ..eval.adapters import CambrianEvalModel
    from ..eval.identity import RunMismatch, model_identity
    from ..eval.runner import run_benchmarks
    from ..models.vlm import load_vlm
    from .features import TowerFeatureMemo

    rd = run_dir(out, plan)
    model = load_vlm(str(model_dir))
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    em = CambrianEvalModel(model, name=plan.id)
    ident = model_identity(str(model_dir))
    memo = TowerFeatureMemo(Path(out) / "cache" / "eval-features", model.encoders) if plan.frozen else None
    ctx = model.features_from(memo) if memo is not None else contextlib.nullcontext()
    with ctx:
        for vision in spec.eval.vision:
            t0 = time.perf_counter()
            kw = dict(
                batch_size=spec.eval.batch_size,
                vision=vision,
                max_new_tokens=spec.eval.max_new_tokens,
                progress=progress,
                identity=ident,
            )
            try:
                run_benchmarks(em, load_benches(spec), root, rd / "eval" / vision, **kw)
            except RunMismatch as e:  # another model / options in that dir (a retrained stage): replace it
                log.info(f"[{plan.id}] {e}; evaluating again")
                run_benchmarks(em, load_benches(spec), root, rd / "eval" / vision, overwrite=True, **kw)
            _add_time(rd, f"eval_{vision}", time.perf_counter() - t0)
    if memo is not None:
        info = read_run_json(rd)
        info["eval_feature_memo"] = memo.stats
        atomic_write_json(rd / "run.json", info)


# ---- the study -----------------------------------------------------------------------------------------------
def select(runs: list[RunPlan], shard: tuple[int, int] | None) -> list[RunPlan]:
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for k, r in enumerate(runs) if k % n == i]


def run_study(
    spec: StudySpec,
    out: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    max_runs: int | None = None,
    max_minutes: float | None = None,
    progress: bool = True,
    report: bool = True,
) -> dict:
    """Train and evaluate the study's missing runs (this shard's; at most ``max_runs`` of them; with
    ``max_minutes``, a run is started only when it is expected to end within that many minutes of the start, the
    expectation being the median wall time of the study's complete runs), then write the report over every
    complete run. Returns ``{"runs", "skipped", "done_now", "pending", "stopped", "report"}``."""
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    runs, skipped = expand(spec)
    for s in skipped:
        log.info(f"skipped {s.axes['towers']} {s.axes}: {s.reason}")
    root = prepare_data(spec, out, progress)
    mine = select(runs, shard)
    todo = [r for r in mine if not run_complete(spec, r, out)]
    log.info(f"{len(runs)} runs ({len(mine)} in this shard), {len(todo)} to train or evaluate")
    done_now, stopped = [], None
    for plan in todo[: max_runs if max_runs is not None else None]:
        if max_minutes is not None:
            elapsed = (time.perf_counter() - t_start) / 60
            est = expected_run_minutes(runs, out)
            if elapsed + est > max_minutes:
                stopped = f"--max-minutes {max_minutes:g}: {elapsed:.1f} min used, a run takes about {est:.1f}"
                log.info(f"stopping: {stopped}")
                break
        t0 = time.perf_counter()
        execute_run(spec, plan, out, root, progress)
        done_now.append({"id": plan.id, "seconds": round(time.perf_counter() - t0, 2)})
        log.info(f"[{plan.id}] done in {done_now[-1]['seconds']:.0f} s")
    result = {
        "runs": [r.id for r in runs],
        "skipped": [{"axes": s.axes, "reason": s.reason} for s in skipped],
        "done_now": done_now,
        "pending": [r.id for r in runs if not run_complete(spec, r, out)],
        "stopped": stopped,
    }
    if report:
        from .report import write_study_report

        result["report"] = write_study_report(spec, out, runs, skipped)
    return result


def expected_run_minutes(runs: list[RunPlan], out: Path) -> float:
    """The median wall time of the runs that recorded one (0 when none has: the first run always starts)."""
    import statistics

    ts = [read_run_json(run_dir(out, r)).get("timings", {}).get("total") for r in runs]
    ts = [t for t in ts if t]
    return statistics.median(ts) / 60 if ts else 0.0


# ---- the equivalent commands -----------------------------------------------------------------------------------
def run_commands(spec: StudySpec, plan: RunPlan, out: Path, root: str, launcher: str = "cambrian") -> str:
    """One shell line for the run: its `cambrian train` stages and `cambrian eval run` settings, chained by &&."""
    rd = run_dir(out, plan)
    recipes = write_run_files(spec, plan, out, root)
    parts = [f"{launcher} train {shlex.quote(str(rd / f'{name}.yaml'))}" for name, _ in recipes]
    last = recipes[-1][1]["output_dir"]
    opts = [
        f"--option {shlex.quote(f'{b}.{k}={json.dumps(v)}')}"
        for b, o in spec.benchmarks.items()
        for k, v in (o or {}).items()
    ]
    for vision in spec.eval.vision:
        cmd = [
            "cambrian eval run",
            f"--model {shlex.quote(str(last))}",
            f"--bench {','.join(spec.benchmarks)}",
            f"--data-root {shlex.quote(root)}",
            f"--out {shlex.quote(str(rd / 'eval' / vision))}",
            f"--vision {vision}",
            f"--batch-size {spec.eval.batch_size}",
            f"--name {plan.id}",
        ]
        if spec.eval.max_new_tokens:
            cmd.append(f"--max-new-tokens {spec.eval.max_new_tokens}")
        parts.append(" ".join(cmd + opts))
    return " && ".join(parts)


def print_commands(
    spec: StudySpec, out: str | Path, study_args: str, shard=None, launcher: str = "cambrian", progress: bool = True
) -> list[str]:
    """The study as shell lines: one per run (its stages and evaluations chained), then the tabulation. The run
    files (model config, recipes) and the shared data are written first, since the lines refer to them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, _ = expand(spec)
    root = prepare_data(spec, out, progress)
    lines = [run_commands(spec, p, out, root, launcher) for p in select(runs, shard)]
    lines.append(f"cambrian study {study_args} --out {shlex.quote(str(out))} --report-only")
    return lines
