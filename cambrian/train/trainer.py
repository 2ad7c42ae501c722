"""The training loop for every stage (``ground``, 1: connector, 2: connector + LLM).

``Trainer(config)`` materialises the run (``builder.py``), wraps the model with its strategy (``strategies.py``:
one process, DDP or FSDP) and ``train()`` runs the optimizer steps, calling its callbacks (``callbacks.py``:
metrics, checkpoints, or a caller's own) after each. The model is any ``VLM`` (``cambrian.models.vlm``).

Loss normalisation: every optimizer step averages the token cross-entropy over all supervised tokens of the
*global* batch (all micro-batches of all ranks). Each micro-batch's mean loss is re-weighted by
``n_tokens * world / N_global`` before backward, so gradient accumulation (4 x 2 == 1 x 8) and data parallelism
(2 processes == 1 process with the same global batch) give the same gradients up to float rounding.

Stage 2 starts from the stage-1 output directory (``model: runs/<stage-1>``): the final output of every run is
a complete loadable model (``save_pretrained``). The official stages have no such bridge: no script turns the
stage-1 shards into the ``mm_projector.bin`` stage 2 expects.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..constants import IGNORE_INDEX
from ..data.collator import model_inputs
from ..data.dataset import BAD_REASONS
from ..models.vlm import check_vlm, load_vlm
from ..utils.log import get_logger
from .builder import (
    DataQualityError,
    build_dataset,
    make_collator,
    make_optimizer,
    plan_batches,
    prepare_model,
    unreadable_lines,
)
from .callbacks import Callback, default_callbacks
from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .distributed import DistEnv, all_reduce_sum, barrier, init_distributed
from .lora import merge_lora
from .metrics import peak_flops, train_flops_per_token
from .run_dir import OutputDirError, prepare_output_dir, resume_mismatch, save_into
from .strategies import make_strategy

log = get_logger("train")

__all__ = ["Trainer", "DataQualityError", "OutputDirError", "supervised_tokens"]

PREFETCH_BATCHES = 4  # micro-batches each loader worker prepares ahead


def supervised_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry loss after the causal shift (label positions 1..T-1 that are not -100)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


class Trainer:
    """``Trainer(cfg).train()``; ``model``/``dataset`` may be given as objects instead of the recipe's strings (the
    demo trains the model it holds in memory); ``callbacks`` replace the defaults (metrics + checkpoints)."""

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module | None = None,
        dataset=None,
        env: DistEnv | None = None,
        callbacks: Sequence[Callback] | None = None,
    ):
        self.env = env or init_distributed()
        prepare_output_dir(config, self.env)
        # the run's own copy (the caller's config is left alone): overwrite is done, and the train_config.yaml saved
        # from it must not delete this run when reused as a recipe
        self.cfg = cfg = dataclasses.replace(config, overwrite=False)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if model is None:
            if cfg.model is None:
                raise ConfigError("no model: set model: (a preset, a checkpoint dir or a config file) in the recipe")
            model = load_vlm(str(cfg.model))
        check_vlm(model, "training")
        self.model = model
        self.out = Path(cfg.output_dir)
        self.callbacks: list[Callback] = list(callbacks) if callbacks is not None else default_callbacks()
        self.stop_now = False  # a callback may end the loop after the current step
        self.completed = False  # every step ran and the bad-sample check passed

        self.grounding = cfg.stage == "ground"
        self.param_counts, self.use_lora = prepare_model(self.model, cfg, self.env)
        self.precision = (
            cfg.precision if cfg.precision != "auto" else ("bf16" if self.env.device.type == "cuda" else "fp32")
        )

        self.dataset = dataset if dataset is not None else build_dataset(cfg, self.model, self.env)
        self.line_bad = unreadable_lines(self.dataset, cfg.max_bad_fraction)
        plan = plan_batches(cfg, self.dataset, self.env.world_size)
        self.planner, self.grad_accum = plan.planner, plan.grad_accum
        self.steps_per_epoch, self.total_steps = plan.steps_per_epoch, plan.total_steps
        self.collator = make_collator(cfg, self.model)

        self.strategy = make_strategy(cfg.distributed, self.env)
        self.engine = self.strategy.wrap(self.model)
        self.groups, self.optimizer, self.scheduler, self.warmup_steps = make_optimizer(
            cfg, self.model, self.env, self.total_steps
        )
        self.trainable_params = [p for p in self.model.parameters() if p.requires_grad]
        n_llm = sum(p.numel() for p in self.model.llm.parameters())
        n_llm_train = sum(p.numel() for p in self.model.llm.parameters() if p.requires_grad)
        self.flops_per_token = train_flops_per_token(n_llm, n_llm_train)
        self.peak_flops = peak_flops(self.env.device) if self.env.device.type == "cuda" else None
        self.bad: Counter = Counter()  # bad samples by reason (restored on resume)
        self._last_good: dict | None = None  # the last micro-batch with a good sample (stands in for an all-bad one)

        self.state = {
            "step": 0,
            "epoch": 0,
            "step_in_epoch": 0,
            "samples_seen": 0,
            "tokens_seen": 0,
            "bad_counts": {},
            "world_size": self.env.world_size,
        }
        if cfg.resume == "auto":
            self._resume_latest()
        elif cfg.resume:
            ck = Path(cfg.resume)
            if not ck.is_dir():
                raise FileNotFoundError(f"resume checkpoint {cfg.resume} not found")
            self._check_resume_config(ck)
            self._resume(ck)

    # ---- resume ---------------------------------------------------------------------------------------
    def _check_resume_config(self, ck: Path) -> None:
        diff = resume_mismatch(self.cfg, ck)
        if diff:
            raise OutputDirError(
                f"--resume: {ck} was trained with other settings: {diff}; resume with the checkpoint's "
                "settings, or start over with --overwrite / another output_dir"
            )

    def _resume_latest(self) -> None:
        """Resume from the newest checkpoint that reads back; a truncated / corrupt newer one is skipped with one
        warning line (the error of the newest is raised when none is usable)."""
        cks = list(reversed(list_checkpoints(self.out, complete_only=False)))
        first_error = None
        for ck in cks:
            self._check_resume_config(ck)
            try:
                self._resume(ck)
                return
            except CheckpointError as e:
                first_error = first_error or e
                if ck == cks[-1]:
                    raise first_error from None
                if self.env.is_main:
                    log.warning(f"skipping checkpoint {ck.name}: {' '.join(str(e).split())}; trying the previous one")

    def _resume(self, ck: Path) -> None:
        st = load_checkpoint(ck, self.engine, self.model, self.optimizer, self.env)
        self.scheduler.load_state_dict(st.pop("scheduler"))
        self.state.update(st)
        self.state["world_size"] = self.env.world_size
        if self.env.is_main:
            log.info(f"resumed from {ck} at step {self.state['step']}")

    # ---- the loop -------------------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _loader(self, epoch: int, start: int, end: int):
        micro = []
        for s in range(start, end):
            micro += self.planner.micro_batches(epoch, s, self.env.rank)
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=micro,
            collate_fn=self.collator,
            num_workers=self.cfg.num_workers,
            pin_memory=self.env.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=PREFETCH_BATCHES if self.cfg.num_workers else None,
        )

    def _touch_all(self) -> torch.Tensor:
        """A zero-valued term that depends on every trainable parameter, so DDP sees a gradient for each even when a
        micro-batch leaves some unused (text-only samples skip the connector)."""
        return sum(p.reshape(-1)[0] for p in self.trainable_params) * 0.0

    def _weight(self, batch: dict) -> float:
        """What a micro-batch's mean loss averages over: supervised tokens (LM), or the summed cell weights
        (grounding)."""
        return batch["weight"] if self.grounding else supervised_tokens(batch["labels"])

    def train(self) -> dict:
        cfg, env = self.cfg, self.env
        self.out.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            cfg.save(self.out / "train_config.yaml")
        self.bad = Counter(self.state.get("bad_counts", {}))
        self._last_good = None
        summary: dict = {}
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self.engine.train()
        try:
            while self.state["step"] < self.total_steps and not self.stop_now:
                epoch, start = self.state["epoch"], self.state["step_in_epoch"]
                end = min(self.steps_per_epoch, start + (self.total_steps - self.state["step"]))
                it = iter(self._loader(epoch, start, end))
                for _ in range(start, end):
                    summary = self._step([next(it) for _ in range(self.grad_accum)], epoch)
                    self._check_bad(final=False)
                    for cb in self.callbacks:
                        cb.on_step_end(self, summary)
                    if self.stop_now:
                        break
                if self.state["step_in_epoch"] >= self.steps_per_epoch:
                    self.state["epoch"] += 1
                    self.state["step_in_epoch"] = 0
            if not self.stop_now:  # (a callback that ends the run leaves what a kill at this step would)
                self._check_bad(final=True)
                self.completed = True
                summary["bad_counts"] = dict(self.bad + self.line_bad)
        finally:  # metrics and bars closed; the final checkpoint written when completed (CheckpointCallback)
            for cb in self.callbacks:
                cb.on_train_end(self, summary)
        if self.completed:  # a failed or stopped run writes no final model
            self.save_model(self.out)
        return summary

    def _step(self, micro: list[dict], epoch: int) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches; returns the step's metrics record."""
        env, accum = self.env, self.grad_accum
        t0 = time.perf_counter()
        # global reductions: supervised tokens, samples, LLM tokens, bad counts by reason
        local = [
            sum(self._weight(b) for b in micro if not b["empty"]),
            sum(b["num_samples"] for b in micro),
            sum(b.get("num_tokens", 0) for b in micro if not b["empty"]),
        ]
        local += [sum(b["bad_counts"].get(r, 0) for b in micro) for r in BAD_REASONS]
        total = all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=env.device), env).tolist()
        n_sup, n_samples, n_tokens = total[0], int(total[1]), int(total[2])
        for r, c in zip(BAD_REASONS, total[3:]):
            if c:
                self.bad[r] += int(c)
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        for a, b in enumerate(micro):
            weight = 1.0
            if b["empty"]:  # every sample of this micro-batch was bad: run a zero-weighted one
                if self._last_good is None:
                    raise DataQualityError("a whole micro-batch of bad samples before any good one")
                b, weight = self._last_good, 0.0
            else:
                self._last_good = b
            kwargs = model_inputs(b, env.device)
            with self.strategy.no_sync(self.engine, a == accum - 1), self._autocast():
                out = self.engine(**kwargs)
                n = self._weight(b) * weight
                loss = out.loss.float() * (n * env.world_size / max(n_sup, 1.0))
                if self.strategy.needs_every_parameter() or not loss.requires_grad:  # e.g. stage 1, text-only batch
                    loss = loss + self._touch_all()
            loss.backward()
            loss_sum += out.loss.detach().double() * n
        self.strategy.fill_missing_grads(self.trainable_params)
        gnorm = self.strategy.clip(self.engine, self.trainable_params, self.cfg.max_grad_norm)
        lrs = {g["name"]: pg["lr"] for g, pg in zip(self.groups, self.optimizer.param_groups)}
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_val = float(all_reduce_sum(loss_sum, env)) / max(n_sup, 1.0)
        st = self.state
        st["step"] += 1
        st["step_in_epoch"] += 1
        st["samples_seen"] += n_samples
        st["tokens_seen"] += n_tokens
        st["bad_counts"] = dict(self.bad)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        rec = {
            "step": st["step"],
            "epoch": epoch,
            "loss": loss_val,
            "lr": lrs,
            "grad_norm": gnorm,
            "samples_per_s": n_samples / dt,
            "tokens_per_s": n_tokens / dt,
            "bad": sum(self.bad.values()) + sum(self.line_bad.values()),
        }
        if self.peak_flops:
            rec["mfu"] = self.flops_per_token * n_tokens / dt / (self.peak_flops * env.world_size)
        return rec

    def _check_bad(self, final: bool) -> None:
        bad = self.bad + self.line_bad  # unparseable lines count as bad samples seen
        seen = self.state["samples_seen"] + sum(self.line_bad.values())
        n_bad = sum(bad.values())
        if seen == 0 or (not final and seen < self.cfg.bad_check_after):
            return
        if n_bad > self.cfg.max_bad_fraction * seen:
            detail = ", ".join(f"{r}={c}" for r, c in bad.most_common())
            raise DataQualityError(
                f"{n_bad} of {seen} samples ({100 * n_bad / seen:.2f}%) were bad, more than max_bad_fraction="
                f"{self.cfg.max_bad_fraction:g}: {detail}. Run `cambrian data validate FILE --images DIR` to list them."
            )

    # ---- saving ---------------------------------------------------------------------------------------
    def save(self) -> Path:
        st = dict(self.state)
        st["scheduler"] = self.scheduler.state_dict()
        return save_checkpoint(
            self.out,
            self.state["step"],
            self.engine,
            self.model,
            self.optimizer,
            st,
            self.env,
            self.cfg,
            self.cfg.save_total_limit,
        )

    def save_model(self, out: Path) -> None:
        """Write the complete model (``save_pretrained``) on rank 0; LoRA adapters are merged first."""
        with self.strategy.full_model(self.engine):
            if self.env.is_main:
                if self.use_lora:
                    merge_lora(self.model)
                save_into(self.model, Path(out))
        barrier(self.env)
