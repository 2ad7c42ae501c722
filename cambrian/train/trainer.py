"""The training loop for stage 1 (connector) and stage 2 (connector + LLM).

Loss normalisation: every optimizer step averages the token cross-entropy over all supervised tokens of the
*global* batch (all micro-batches of all ranks). Each micro-batch's mean loss is re-weighted by
``n_tokens * world / N_global`` before backward, so gradient accumulation (4 x 2 == 1 x 8) and data parallelism
(2 processes == 1 process with the same global batch) give the same gradients up to float rounding.

Stage 2 starts from the stage-1 output directory (``model: runs/<stage-1>``): the final output of every run is
a complete loadable model (``save_pretrained``), which closes the gap between the official stages (spec §9.2:
no script turns the stage-1 shards into the ``mm_projector.bin`` stage 2 expects).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..constants import IGNORE_INDEX
from ..errors import UserError
from ..data.collator import Collator, model_inputs
from ..data.dataset import BAD_REASONS, ImagePipeline, SupervisedDataset, model_tokenize_fn, model_visual_tokens_fn
from ..data.llava import LlavaSource
from ..data.sampler import StepPlanner
from .checkpoint import CheckpointError, all_checkpoint_dirs, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import DistEnv, all_reduce_sum, barrier, init_distributed, no_sync, resolve_strategy, wrap_model
from .freeze import apply_freeze, param_groups, stage_policy
from .metrics import MetricsLogger, peak_flops, train_flops_per_token


class DataQualityError(UserError, RuntimeError):
    """More bad samples than ``max_bad_fraction`` allows."""


class OutputDirError(UserError, ValueError):
    """``output_dir`` holds another run, or ``--resume`` was asked with settings that differ from the checkpoint's."""


# files a run writes into its output_dir (metrics, config, checkpoints, the final model): what --overwrite deletes
RUN_FILES = ("metrics.jsonl", "train_config.yaml", "tensorboard", "wandb", ".tmp-model", "config.json", "toy_config.json",
             "model.safetensors", "model.safetensors.index.json", "generation_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
             "added_tokens.json", "chat_template.jinja")
# fields whose change makes a resumed run a different run
RESUME_FIELDS = ("stage", "data", "micro_batch_size", "global_batch_size", "grad_accum", "lr", "seed")


def previous_run_files(out: Path) -> list[str]:
    """Names in ``out`` that show an earlier training run (metrics, its config, checkpoints)."""
    if not out.is_dir():
        return []
    names = [n for n in ("metrics.jsonl", "train_config.yaml") if (out / n).exists()]
    names += sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(("checkpoint-", ".tmp-checkpoint-")))
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
        raise OutputDirError(f"output_dir {out} holds a previous run ({shown}); pass --resume to continue it or "
                             "--overwrite to replace it (or choose another output_dir)")
    model = Path(str(cfg.model))
    if model.is_dir() and model.resolve() == out.resolve():
        raise OutputDirError(f"output_dir {out} is the model dir this run starts from; --overwrite would delete it: "
                             "choose another output_dir")
    if env.is_main:
        import shutil

        for name in found + [n for n in RUN_FILES if n not in found]:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        print(f"[cambrian train] --overwrite: removed the previous run's files from {out}")
    barrier(env)


def resume_mismatch(cfg: TrainConfig, ck: Path) -> str | None:
    """The fields of ``RESUME_FIELDS`` that differ between ``cfg`` and the checkpoint's ``train_config.yaml``, as
    one phrase (None when equal or when the checkpoint has no readable config)."""
    import yaml

    try:
        saved = yaml.safe_load((ck / "train_config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
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


def load_model(spec: str):
    """A saved model dir (``config.json`` + weights, e.g. a stage-1 output), a preset name or a YAML file.
    ``toy`` / a dir saved from it: the stand-in model of ``cambrian.train.toy`` (smoke tests)."""
    from .toy import ToyVLM

    p = Path(spec)
    if spec == "toy":
        return ToyVLM()
    if p.is_dir() and (p / "toy_config.json").exists():
        return ToyVLM.from_pretrained(p)
    from ..models.cambrian_model import CambrianModel

    return CambrianModel.load(spec)


def lr_lambda(total: int, warmup: int, kind: str):
    """HF-equivalent schedules: linear warmup, then cosine to 0 / linear to 0 / constant."""

    def f(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant":
            return 1.0
        progress = float(step - warmup) / float(max(1, total - warmup))
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return f


def inject_lora(model: nn.Module, lora: dict) -> int:
    """Add LoRA adapters to ``model.llm`` in place (peft ``inject_adapter_in_model``; names keep their
    ``llm.`` prefix). Returns the number of adapted modules."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("lora.enabled needs the 'peft' package") from e
    cfg = LoraConfig(r=int(lora.get("r", 16)), lora_alpha=int(lora.get("alpha", 32)), lora_dropout=float(lora.get("dropout", 0.0)),
                     target_modules=list(lora.get("target_modules") or []))
    inject_adapter_in_model(cfg, model.llm)
    return sum(1 for n, _ in model.llm.named_modules() if n.endswith("lora_A"))


def merge_lora(model: nn.Module) -> None:
    """Fold LoRA weights into the base layers and remove the adapter modules (clean ``save_pretrained``)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover
        return
    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer) and hasattr(mod, "get_base_layer"):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())


def supervised_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry loss after the causal shift (label positions 1..T-1 that are not -100)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


class Trainer:
    def __init__(self, config: TrainConfig, model: nn.Module | None = None, dataset: SupervisedDataset | None = None,
                 env: DistEnv | None = None):
        self.cfg = cfg = config
        self.env = env or init_distributed()
        prepare_output_dir(cfg, self.env)
        cfg.overwrite = False  # done: the saved train_config.yaml must not delete this run when reused as a recipe
        self._seed_all(cfg.seed)
        self.model = model if model is not None else load_model(cfg.model)
        self.out = Path(cfg.output_dir)
        self.stop_after_step: int | None = None  # test hook: simulate a kill right after this step

        # ---- what is trained ------------------------------------------------------------------------
        self.grounding = cfg.stage == "ground"
        use_lora = bool(cfg.lora.get("enabled")) and cfg.stage == 2
        if use_lora:
            inject_lora(self.model, cfg.lora)
        policy = cfg.trainable or stage_policy(cfg.stage, cfg.unfreeze_vision, lora=use_lora)
        self.param_counts = apply_freeze(self.model, policy)
        self.use_lora = use_lora
        if cfg.gradient_checkpointing:
            llm = getattr(self.model, "llm", None)
            if llm is not None and hasattr(llm, "gradient_checkpointing_enable"):
                llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.env.device.type == "cuda":
            from ..models.builder import check_memory

            need = sum(p.numel() * p.element_size() for p in {id(p): p for p in self.model.parameters()}.values())
            check_memory(need, "the model", self.env.device)
        self.model.to(self.env.device)
        if cfg.compile and getattr(self.model, "llm", None) is not None:
            self.model.llm.compile()

        # ---- precision ------------------------------------------------------------------------------
        prec = cfg.precision
        if prec == "auto":
            prec = "bf16" if self.env.device.type == "cuda" else "fp32"
        self.precision = prec

        # ---- data -----------------------------------------------------------------------------------
        self.dataset = dataset if dataset is not None else self._build_dataset()
        self.line_bad = self._check_lines()
        world = self.env.world_size
        accum = cfg.grad_accum
        if cfg.global_batch_size:
            per = cfg.micro_batch_size * world
            if cfg.global_batch_size % per:
                raise ValueError(f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size x world = {per}")
            accum = cfg.global_batch_size // per
        self.grad_accum = accum
        self.planner = StepPlanner(self.dataset.lengths, cfg.micro_batch_size, accum, world, cfg.seed, cfg.sampler)
        self.steps_per_epoch = self.planner.steps_per_epoch()
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} samples do not fill one global batch of {self.planner.global_batch}")
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        tok = getattr(self.model, "tokenizer", None)
        pad = getattr(tok, "pad_token_id", None)
        if pad is None:
            pad = getattr(tok, "eos_token_id", 0) or 0
        if self.grounding:
            from ..data.grounding import GroundingCollator

            self.collator = GroundingCollator(cfg.grounding["objective"], cfg.grounding["scale"])
        else:
            self.collator = Collator(pad)

        # ---- engine, optimizer, schedule ------------------------------------------------------------
        self.strategy = resolve_strategy(cfg.distributed, self.env)
        self.engine = wrap_model(self.model, self.strategy, self.env)
        self.groups = param_groups(self.model, cfg.lr, cfg.sva_lr, cfg.vision_lr, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(
            [{k: v for k, v in g.items() if k != "names"} for g in self.groups], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
            weight_decay=cfg.weight_decay, foreach=self.env.device.type == "cuda")
        self.warmup_steps = math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.total_steps, self.warmup_steps, cfg.scheduler))
        self.trainable_params = [p for p in self.model.parameters() if p.requires_grad]

        self.state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "samples_seen": 0, "tokens_seen": 0,
                      "bad_counts": {}, "world_size": world}
        if cfg.resume == "auto":
            self._resume_latest()
        elif cfg.resume:
            ck = Path(cfg.resume)
            if not ck.is_dir():
                raise FileNotFoundError(f"resume checkpoint {cfg.resume} not found")
            self._check_resume_config(ck)
            self._resume(ck)

    # ---- setup helpers --------------------------------------------------------------------------------
    def _seed_all(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build_dataset(self) -> SupervisedDataset:
        cfg = self.cfg
        if not cfg.data:
            raise ValueError("no training data: set data: [{path: ..., images: ...}] in the recipe")
        vt = model_visual_tokens_fn(self.model)
        per_image = int(vt((336, 336)))
        idx_cache = None
        try:
            from ..paths import cache_dir

            idx_cache = cache_dir("data-index")
        except Exception:
            pass
        sources = [LlavaSource(d["path"], d.get("images"), image_tokens=per_image, index_cache=idx_cache, name=d.get("name"),
                               allow_outside_root=bool(d.get("allow_outside_root", False)))
                   for d in cfg.data]
        selection = None
        if cfg.mixing_cap or cfg.mixing_ratios:
            from ..data.mixing import SourceSpec, build_mixture, plan_mixture

            specs = {str(k): SourceSpec(len(s), cfg.data[k].get("category", "general")) for k, s in enumerate(sources)}
            take = plan_mixture(specs, cfg.mixing_cap, cfg.mixing_ratios, cfg.mixing_total)
            selection = build_mixture([len(s) for s in sources], [take[str(k)] for k in range(len(sources))], cfg.seed)
        max_len = cfg.max_length or getattr(getattr(getattr(self.model, "config", None), "llm", None), "max_length", 2048)
        cache = None
        if cfg.feature_cache:
            cache = self._build_feature_cache(sources, selection)
        if self.grounding:
            from ..data.grounding import GroundingDataset

            grid = getattr(getattr(getattr(self.model, "connector", None), "config", None), "grid", None)
            if grid is None or getattr(self.model, "tokenizer", None) is None:
                raise ValueError(f"stage: ground needs a model with a connector grid and a tokenizer (a CambrianModel); "
                                 f"{type(self.model).__name__} has none")
            return GroundingDataset(sources, self.model.tokenizer, ImagePipeline.from_model(self.model, cache), grid,
                                    selection=selection)
        return SupervisedDataset(sources, model_tokenize_fn(self.model), vt, ImagePipeline.from_model(self.model, cache),
                                 max_length=max_len, selection=selection)

    def _check_lines(self) -> Counter:
        """Lines of the data files that never became records (not JSON, not an object), by reason. They count as bad
        samples in every check and report; when they alone exceed ``max_bad_fraction`` of the lines, training stops
        before the first step (``cambrian data validate`` applies the same rule with the same reader)."""
        bad: Counter = Counter()
        total = 0
        first: list[str] = []
        for src in getattr(self.dataset, "sources", None) or []:
            by = getattr(src, "bad_by_reason", None)
            if not isinstance(by, dict):
                continue
            bad.update(by)
            total += int(getattr(src, "total", len(src)))
            for ln, _, _ in getattr(src, "bad_examples", [])[: max(0, 5 - len(first))]:
                first.append(f"{Path(src.path).name}:{ln}")
        n = sum(bad.values())
        if n and n > self.cfg.max_bad_fraction * total:
            detail = ", ".join(f"{r}={c}" for r, c in bad.most_common())
            raise DataQualityError(
                f"{n} of {total} data lines ({100 * n / total:.2f}%) are not records ({detail}; first: {', '.join(first)}), "
                f"more than max_bad_fraction={self.cfg.max_bad_fraction:g}. Run `cambrian data validate FILE` to list them.")
        return bad

    def _build_feature_cache(self, sources, selection):
        from .features import FeatureCache

        encs = list(getattr(self.model, "encoders", []) or [])
        if any(p.requires_grad for e in encs for p in e.parameters()):
            raise ValueError("feature_cache needs frozen vision towers (unfreeze_vision is on)")
        root = self.cfg.feature_cache
        if root == "auto":
            from ..paths import cache_dir

            root = cache_dir("features")
        cache = FeatureCache(root, encs)
        paths = []
        pairs = selection if selection is not None else [(k, i) for k, s in enumerate(sources) for i in range(len(s))]
        for k, i in pairs:
            try:
                paths += sources[int(k)].image_paths(sources[int(k)][int(i)])
            except ValueError:
                continue
        n = cache.build(paths, self.env.device, rank=self.env.rank, world_size=self.env.world_size)
        barrier(self.env)
        if self.env.is_main and n:
            print(f"[cambrian train] cached features of {n} images in {cache.root}")
        return cache

    def _check_resume_config(self, ck: Path) -> None:
        diff = resume_mismatch(self.cfg, ck)
        if diff:
            raise OutputDirError(f"--resume: {ck} was trained with other settings: {diff}; resume with the checkpoint's "
                                 "settings, or start over with --overwrite / another output_dir")

    def _resume_latest(self) -> None:
        """Resume from the newest checkpoint that reads back; a truncated / corrupt newer one is skipped with one
        warning line (the error of the newest is raised when none is usable)."""
        cks = list(reversed(all_checkpoint_dirs(self.out)))
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
                    print(f"warning: skipping checkpoint {ck.name}: {' '.join(str(e).split())}; trying the previous one",
                          file=sys.stderr)

    def _resume(self, ck: Path) -> None:
        st = load_checkpoint(ck, self.engine, self.model, self.optimizer, self.env)
        self.scheduler.load_state_dict(st.pop("scheduler"))
        self.state.update(st)
        self.state["world_size"] = self.env.world_size
        if self.env.is_main:
            print(f"[cambrian train] resumed from {ck} at step {self.state['step']}")

    # ---- the loop -------------------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _loader(self, epoch: int, start: int, end: int):
        micro = []
        for s in range(start, end):
            micro += self.planner.micro_batches(epoch, s, self.env.rank)
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=micro, collate_fn=self.collator,
                                           num_workers=self.cfg.num_workers, pin_memory=self.env.device.type == "cuda",
                                           persistent_workers=False, prefetch_factor=4 if self.cfg.num_workers else None)

    def _touch_all(self) -> torch.Tensor:
        """A zero-valued term that depends on every trainable parameter, so DDP sees a gradient for each even when a
        micro-batch leaves some unused (text-only samples skip the connector)."""
        return sum(p.reshape(-1)[0] for p in self.trainable_params) * 0.0

    def train(self) -> dict:
        cfg, env = self.cfg, self.env
        self.out.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            cfg.save(self.out / "train_config.yaml")
        logger = MetricsLogger(self.out, cfg, enabled=env.is_main, total=self.total_steps, initial=self.state["step"])
        n_llm = sum(p.numel() for p in getattr(self.model, "llm", self.model).parameters())
        n_llm_train = sum(p.numel() for p in getattr(self.model, "llm", self.model).parameters() if p.requires_grad)
        flops_tok = train_flops_per_token(n_llm, n_llm_train)
        peak = peak_flops(env.device) if env.device.type == "cuda" else None
        bad = Counter(self.state.get("bad_counts", {}))
        A = self.grad_accum
        last_good = None
        summary = {}
        self.engine.train()
        while self.state["step"] < self.total_steps:
            epoch, sie = self.state["epoch"], self.state["step_in_epoch"]
            end = min(self.steps_per_epoch, sie + (self.total_steps - self.state["step"]))
            it = iter(self._loader(epoch, sie, end))
            for _ in range(sie, end):
                t0 = time.perf_counter()
                micro = [next(it) for _ in range(A)]
                # global reductions: supervised tokens, samples, LLM tokens, bad counts by reason
                local = [sum(self._weight(b) for b in micro if not b["empty"]),
                         sum(b["num_samples"] for b in micro),
                         sum(b.get("num_tokens", 0) for b in micro if not b["empty"])]
                local += [sum(b["bad_counts"].get(r, 0) for b in micro) for r in BAD_REASONS]
                red = all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=env.device), env).tolist()
                n_sup, n_samples, n_tokens = red[0], int(red[1]), int(red[2])
                for r, c in zip(BAD_REASONS, red[3:]):
                    if c:
                        bad[r] += int(c)
                loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
                for a, b in enumerate(micro):
                    weight = 1.0
                    if b["empty"]:  # every sample of this micro-batch was bad: run a zero-weighted one
                        if last_good is None:
                            raise DataQualityError("a whole micro-batch of bad samples before any good one")
                        b, weight = last_good, 0.0
                    else:
                        last_good = b
                    kwargs = model_inputs(b, env.device)
                    with no_sync(self.engine, a == A - 1), self._autocast():
                        out = self.engine(**kwargs)
                        n = self._weight(b) * weight
                        loss = out.loss.float() * (n * env.world_size / max(n_sup, 1.0))
                        if self.strategy == "ddp" or not loss.requires_grad:  # e.g. stage 1 on a text-only batch
                            loss = loss + self._touch_all()
                    loss.backward()
                    loss_sum += out.loss.detach().double() * n
                if not self.strategy.startswith("fsdp"):
                    # a parameter unused by the whole step (connector on a text-only batch) still takes its Adam
                    # step with a zero gradient, as under DDP (and as in the official code, whose text-only samples
                    # carry a dummy image): the update must not depend on how the batch was split
                    for p in self.trainable_params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                gnorm = self._clip()
                lrs = {g["name"]: pg["lr"] for g, pg in zip(self.groups, self.optimizer.param_groups)}
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                loss_val = float(all_reduce_sum(loss_sum, env)) / max(n_sup, 1.0)
                self.state["step"] += 1
                self.state["step_in_epoch"] += 1
                self.state["samples_seen"] += n_samples
                self.state["tokens_seen"] += n_tokens
                self.state["bad_counts"] = dict(bad)
                if env.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                rec = {"step": self.state["step"], "epoch": epoch, "loss": loss_val,
                       "lr": lrs,
                       "grad_norm": gnorm, "samples_per_s": n_samples / dt, "tokens_per_s": n_tokens / dt,
                       "bad": sum(bad.values()) + sum(self.line_bad.values())}
                if peak:
                    rec["mfu"] = flops_tok * n_tokens / dt / (peak * env.world_size)
                summary = rec
                logger.log(rec, log=self.state["step"] % cfg.log_steps == 0 or self.state["step"] == self.total_steps)
                self._check_bad(bad, final=False)
                if cfg.save_steps and self.state["step"] % cfg.save_steps == 0:
                    self.save()
                if self.stop_after_step is not None and self.state["step"] >= self.stop_after_step:
                    logger.close()
                    return summary
            if self.state["step_in_epoch"] >= self.steps_per_epoch:
                self.state["epoch"] += 1
                self.state["step_in_epoch"] = 0
        logger.close()
        self._check_bad(bad, final=True)
        if not (cfg.save_steps and self.state["step"] % cfg.save_steps == 0):
            self.save()
        self.save_model(self.out)
        summary["bad_counts"] = dict(bad + self.line_bad)
        return summary

    def _weight(self, batch: dict) -> float:
        """What a micro-batch's mean loss averages over: supervised tokens (LM), or the summed cell weights
        (grounding)."""
        return batch["weight"] if self.grounding else supervised_tokens(batch["labels"])

    def _clip(self) -> float:
        mx = self.cfg.max_grad_norm
        if self.strategy.startswith("fsdp"):
            norm = self.engine.clip_grad_norm_(mx if mx else float("inf"))
        else:
            norm = torch.nn.utils.clip_grad_norm_(self.trainable_params, mx if mx else float("inf"))
        return float(norm)

    def _check_bad(self, bad: Counter, final: bool) -> None:
        bad = bad + self.line_bad  # unparseable lines count as bad samples seen
        seen = self.state["samples_seen"] + sum(self.line_bad.values())
        n_bad = sum(bad.values())
        if seen == 0 or (not final and seen < self.cfg.bad_check_after):
            return
        if n_bad > self.cfg.max_bad_fraction * seen:
            detail = ", ".join(f"{r}={c}" for r, c in bad.most_common())
            raise DataQualityError(
                f"{n_bad} of {seen} samples ({100 * n_bad / seen:.2f}%) were bad, more than max_bad_fraction="
                f"{self.cfg.max_bad_fraction:g}: {detail}. Run `cambrian data validate FILE --images DIR` to list them.")

    def save(self) -> Path:
        st = dict(self.state)
        st["scheduler"] = self.scheduler.state_dict()
        return save_checkpoint(self.out, self.state["step"], self.engine, self.model, self.optimizer, st, self.env,
                               self.cfg, self.cfg.save_total_limit)

    def save_model(self, out: Path) -> None:
        """Write the complete model (``save_pretrained``) on rank 0; LoRA adapters are merged first."""
        env = self.env
        if self.strategy.startswith("fsdp"):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            ctx = FSDP.summon_full_params(self.engine, writeback=False, rank0_only=True, offload_to_cpu=True)
        else:
            ctx = nullcontext()
        with ctx:
            if env.is_main:
                if self.use_lora:
                    merge_lora(self.model)
                _save_into(self.model, Path(out))
        barrier(env)


def _save_into(model, out: Path) -> None:
    """``save_pretrained`` next to the run's checkpoints and metrics: save into a temp dir (a model's
    ``save_pretrained`` may replace the whole directory), then move each file in; ``config.json`` last, so the dir
    only looks loadable once complete."""
    import shutil

    tmp = out / ".tmp-model"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    names = sorted((p.name for p in tmp.iterdir()), key=lambda n: n in ("config.json", "toy_config.json"))
    for n in names:
        dst = out / n
        if dst.is_dir():
            shutil.rmtree(dst)
        os.replace(tmp / n, dst)
    shutil.rmtree(tmp, ignore_errors=True)


def train_from_config(cfg: TrainConfig, model=None, dataset=None) -> dict:
    return Trainer(cfg, model=model, dataset=dataset).train()

