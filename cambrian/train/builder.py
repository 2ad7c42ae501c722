"""Materialise a training run from its ``TrainConfig``: the model's trainable parts, the dataset (with its feature
cache and mixture), the batch plan, the optimizer and the schedule. The loop itself is in ``trainer.py``.

Every function takes the model through the ``VLM`` contract (``cambrian.models.vlm``) only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..data.collator import Collator
from ..data.dataset import ImagePipeline, SupervisedDataset
from ..data.llava import LlavaSource
from ..data.sampler import StepPlanner
from ..errors import UserError
from ..models.training import parameters_with_prefixes
from ..utils.log import get_logger
from .config import ConfigError, TrainConfig
from .distributed import DistEnv, barrier
from .freeze import apply_freeze, param_groups
from .lora import inject_lora
from .schedule import lr_lambda


class DataQualityError(UserError, RuntimeError):
    """More bad samples than ``max_bad_fraction`` allows."""


def prepare_model(model: nn.Module, cfg: TrainConfig, env: DistEnv) -> tuple[dict, bool]:
    """LoRA (stage 2), the freeze policy of the stage, gradient checkpointing, the device and ``compile``, in place.
    Returns (parameter counts by group, whether LoRA is on)."""
    use_lora = bool(cfg.lora.get("enabled")) and cfg.stage == 2
    if use_lora:
        inject_lora(model, cfg.lora)
    if cfg.trainable:  # the recipe names the parameters itself
        params = parameters_with_prefixes(model, cfg.trainable)
    else:
        params = model.trainable_parameters(cfg.stage, cfg.unfreeze_vision, lora=use_lora)
    counts = apply_freeze(model, params)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model.llm)
    if env.device.type == "cuda":
        from ..models.builder import check_memory

        need = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
        check_memory(need, "the model", env.device)
    model.to(env.device)
    if cfg.compile:
        model.llm.compile()
    return counts, use_lora


def enable_checkpointing(llm: nn.Module) -> None:
    """Recompute the HF LLM's layers in backward (non-reentrant). transformers 5 renamed the method and its
    keyword; the old name still works with a FutureWarning."""
    if hasattr(llm, "activation_checkpointing_enable"):
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_dataset(cfg: TrainConfig, model, env: DistEnv):
    """The recipe's data as a ``SupervisedDataset`` (or a ``GroundingDataset`` for ``stage: ground``)."""
    if not cfg.data:
        raise ConfigError("no training data: set data: [{path: ..., images: ...}] in the recipe")
    per_image = int(model.visual_token_count((336, 336)))
    from ..paths import cache_dir

    sources = [
        LlavaSource(
            d["path"],
            d.get("images"),
            image_tokens=per_image,
            index_cache=cache_dir("data-index"),
            name=d.get("name"),
            allow_outside_root=bool(d.get("allow_outside_root", False)),
        )
        for d in cfg.data
    ]
    selection = None
    if cfg.mixing_cap or cfg.mixing_ratios:
        from ..data.mixing import SourceSpec, build_mixture, plan_mixture

        specs = {str(k): SourceSpec(len(s), cfg.data[k].get("category", "general")) for k, s in enumerate(sources)}
        take = plan_mixture(specs, cfg.mixing_cap, cfg.mixing_ratios, cfg.mixing_total)
        selection = build_mixture([len(s) for s in sources], [take[str(k)] for k in range(len(sources))], cfg.seed)
    cache = build_feature_cache(cfg, model, sources, selection, env) if cfg.feature_cache else None
    pipeline = ImagePipeline.from_model(model, cache)
    if cfg.stage == "ground":
        from ..data.grounding import GroundingDataset

        if model.grounding_grid is None:
            raise ConfigError(
                f"stage: ground needs a model with a one-token-per-cell connector grid; {type(model).__name__} has none"
            )
        return GroundingDataset(sources, model.tokenizer, pipeline, model.grounding_grid, selection=selection)
    return SupervisedDataset(
        sources,
        model.tokenize_conversation,
        model.visual_token_count,
        pipeline,
        max_length=cfg.max_length or model.max_length,
        selection=selection,
    )


def build_feature_cache(cfg: TrainConfig, model, sources, selection, env: DistEnv):
    """Frozen towers' outputs for every image of the run, computed once (sharded over ranks) and read back."""
    from .features import FeatureCache

    encs = list(model.encoders)
    if any(p.requires_grad for e in encs for p in e.parameters()):
        raise ConfigError("feature_cache needs frozen vision towers (unfreeze_vision is on)")
    root = cfg.feature_cache
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
    n = cache.build(paths, env.device, rank=env.rank, world_size=env.world_size)
    barrier(env)
    if env.is_main and n:
        get_logger("train").info(f"cached features of {n} images in {cache.root}")
    return cache


def unreadable_lines(dataset, max_bad_fraction: float) -> Counter:
    """Lines of the data files that never became records (not JSON, not an object), by reason. They count as bad
    samples in every check and report; when they alone exceed ``max_bad_fraction`` of the lines, training stops
    before the first step (``cambrian data validate`` applies the same rule with the same reader)."""
    bad: Counter = Counter()
    total = 0
    first: list[str] = []
    for src in getattr(dataset, "sources", ()):  # a dataset handed in by a caller may have no files
        bad.update(src.bad_by_reason)
        total += int(src.total)
        for ln, _, _ in src.bad_examples[: max(0, 5 - len(first))]:
            first.append(f"{Path(src.path).name}:{ln}")
    n = sum(bad.values())
    if n and n > max_bad_fraction * total:
        detail = ", ".join(f"{r}={c}" for r, c in bad.most_common())
        raise DataQualityError(
            f"{n} of {total} data lines ({100 * n / total:.2f}%) are not records ({detail}; first: {', '.join(first)}), "
            f"more than max_bad_fraction={max_bad_fraction:g}. Run `cambrian data validate FILE` to list them."
        )
    return bad


@dataclass
class BatchPlan:
    planner: StepPlanner
    grad_accum: int
    steps_per_epoch: int
    total_steps: int


def plan_batches(cfg: TrainConfig, dataset, world: int) -> BatchPlan:
    accum = cfg.grad_accum
    if cfg.global_batch_size:
        per = cfg.micro_batch_size * world
        if cfg.global_batch_size % per:
            raise ConfigError(
                f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size x world = {per}"
            )
        accum = cfg.global_batch_size // per
    planner = StepPlanner(dataset.lengths, cfg.micro_batch_size, accum, world, cfg.seed, cfg.sampler)
    per_epoch = planner.steps_per_epoch()
    if per_epoch == 0:
        raise ConfigError(f"{len(dataset)} samples do not fill one global batch of {planner.global_batch}")
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return BatchPlan(planner, accum, per_epoch, total)


def make_collator(cfg: TrainConfig, model):
    if cfg.stage == "ground":
        from ..data.grounding import GroundingCollator

        return GroundingCollator(cfg.grounding["objective"], cfg.grounding["scale"])
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    return Collator(pad)


def make_optimizer(cfg: TrainConfig, model: nn.Module, env: DistEnv, total_steps: int):
    """AdamW over the named parameter groups (``freeze.param_groups``) and its LambdaLR schedule."""
    groups = param_groups(model, cfg.lr, cfg.sva_lr, cfg.vision_lr, cfg.weight_decay)
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups],
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        foreach=env.device.type == "cuda",
    )
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, warmup, cfg.scheduler))
    return groups, optimizer, scheduler, warmup
