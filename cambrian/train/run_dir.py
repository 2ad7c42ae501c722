"""A run's output directory: refuse to mix two runs in one (``--resume`` / ``--overwrite``), check that a resumed
run has the checkpoint's settings, and move the final model in next to the checkpoints and metrics."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..utils.log import get_logger
from .config import TrainConfig
from .distributed import DistEnv, barrier


class OutputDirError(UserError, ValueError):
    """``output_dir`` holds another run, or ``--resume`` was asked with settings that differ from the checkpoint's."""


# files a run writes into its output_dir (metrics, config, checkpoints, the final model): what --overwrite deletes
RUN_FILES = (
    "metrics.jsonl",
    "train_config.yaml",
    "tensorboard",
    "wandb",
    ".tmp-model",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)
# fields whose change makes a resumed run a different run
RESUME_FIELDS = ("stage", "data", "micro_batch_size", "global_batch_size", "grad_accum", "lr", "seed")


def previous_run_files(out: Path) -> list[str]:
    """Names in ``out`` that show an earlier training run (metrics, its config, checkpoints)."""
    if not out.is_dir():
        return []
    names = [n for n in ("metrics.jsonl", "train_config.yaml") if (out / n).exists()]
    names += sorted(
        p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(("checkpoint-", ".tmp-checkpoint-"))
    )
    return names


def prepare_output_dir(cfg: TrainConfig, env: DistEnv) -> None:
    """Refuse an ``output_dir`` that holds a previous run unless resuming it (``resume``) or replacing it
    (``overwrite``: the run's own files are deleted, anything else in the dir is kept). A fresh or empty dir, or one
    without run files, is used as it is."""
    out = Path(cfg.output_dir)
    found = previous_run_files(out)
    barrier(env)  # every rank has looked before rank 0 may delete anything: all take the same branch
    if not found or cfg.resume:
        return
    if not cfg.overwrite:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise OutputDirError(
            f"output_dir {out} holds a previous run ({shown}); pass --resume to continue it or "
            "--overwrite to replace it (or choose another output_dir)"
        )
    model = Path(str(cfg.model))
    if model.is_dir() and model.resolve() == out.resolve():
        raise OutputDirError(
            f"output_dir {out} is the model dir this run starts from; --overwrite would delete it: "
            "choose another output_dir"
        )
    if env.is_main:
        for name in found + [n for n in RUN_FILES if n not in found]:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        get_logger("train").info(f"--overwrite: removed the previous run's files from {out}")
    barrier(env)


def resume_mismatch(cfg: TrainConfig, ck: Path) -> str | None:
    """The fields of ``RESUME_FIELDS`` that differ between ``cfg`` and the checkpoint's ``train_config.yaml``, as
    one phrase (None when equal or when the checkpoint has no readable config)."""
    import yaml

    from ..typed import ConfigError, load_yaml, read_config_text

    try:
        saved = load_yaml(read_config_text(ck / "train_config.yaml"))
    except (OSError, yaml.YAMLError, ConfigError):
        return None
    if not isinstance(saved, dict):
        return None
    now = cfg.to_dict()
    diff = []
    for k in RESUME_FIELDS:
        if k not in saved:
            continue
        a, b = saved[k], now.get(k)
        if k == "lr":
            try:
                same = float(a) == float(b)
            except (TypeError, ValueError):
                same = a == b
        else:
            same = a == b
        if not same:
            diff.append(f"{k} ({a!r} -> {b!r})")
    return ", ".join(diff) or None


def save_into(model, out: Path) -> None:
    """``save_pretrained`` next to the run's checkpoints and metrics: save into a temp dir (a model's
    ``save_pretrained`` may replace the whole directory), then move each file in; the model's ``saved_files`` last,
    in their order, so the dir only looks loadable once complete."""
    tmp = out / ".tmp-model"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    order = list(model.saved_files)
    names = sorted((p.name for p in tmp.iterdir()), key=lambda n: order.index(n) if n in order else -1)
    for n in names:
        dst = out / n
        if dst.is_dir():
            shutil.rmtree(dst)
        os.replace(tmp / n, dst)
    shutil.rmtree(tmp, ignore_errors=True)
