"""One training stage of the demo through the project's trainer (``cambrian.train.trainer.Trainer``).

The model object is passed in (stage 2 continues from the stage-1 weights in memory; the trainer also writes the
stage's complete model to its ``output_dir``, exactly like ``cambrian train``). The run's callbacks are the
metrics (``metrics.jsonl``, progress bar) and an in-memory ``History`` of the step records; no resume checkpoints
are written (the report folder stays small; the final model is what stage 2 / chat / eval need).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..train.config import TrainConfig


def stage_config(
    stage: int | str,
    data: str,
    out_dir: str | Path,
    *,
    lr: float,
    sva_lr: float | None,
    micro_batch: int,
    global_batch: int,
    epochs: int,
    max_steps: int | None,
    seed: int,
    feature_cache: str | None,
    warmup_ratio: float,
    progress: bool = True,
    trainable: list[str] | None = None,
    grounding: dict | None = None,
) -> TrainConfig:
    extra = {"trainable": trainable} if trainable else {}
    if grounding:
        extra["grounding"] = grounding
    return TrainConfig.from_dict(
        {
            **extra,
            "model": None,
            "stage": stage,
            "data": [{"path": str(data)}],
            "output_dir": str(out_dir),
            "micro_batch_size": micro_batch,
            "global_batch_size": global_batch,
            "epochs": epochs,
            "max_steps": max_steps,
            "lr": lr,
            "sva_lr": sva_lr,
            "warmup_ratio": warmup_ratio,
            "scheduler": "cosine",
            "weight_decay": 0.0,
            "sampler": "length",
            "feature_cache": feature_cache,
            "num_workers": 0,
            "save_steps": 0,
            "save_total_limit": 1,
            "seed": seed,
            "report_to": [],
            "progress": progress,
            "bad_check_after": 10**9,  # checked once at the end (the demo's data has no bad samples)
        }
    )


def run_stage(model, cfg: TrainConfig) -> dict:
    """Train in place; returns {seconds, steps, samples, final_loss, metrics (list of per-step records)}."""
    from ..train.callbacks import History, MetricsCallback
    from ..train.trainer import Trainer

    t0 = time.perf_counter()
    history = History()
    trainer = Trainer(cfg, model=model, callbacks=[MetricsCallback(), history])
    setup = time.perf_counter() - t0
    summary = trainer.train()
    seconds = time.perf_counter() - t0
    metrics = history.records
    model.eval()
    return {
        "seconds": round(seconds, 2),
        "setup_seconds": round(setup, 2),
        "steps": trainer.total_steps,
        "samples": int(trainer.state.get("samples_seen", 0)),
        "tokens": int(trainer.state.get("tokens_seen", 0)),
        "final_loss": summary.get("loss"),
        "bad_counts": summary.get("bad_counts", {}),
        "param_counts": {k: int(v) for k, v in (trainer.param_counts or {}).items()}
        if isinstance(trainer.param_counts, dict)
        else None,
        "metrics": metrics,
    }
