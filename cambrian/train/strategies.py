"""Training strategies: how one process, DDP or FSDP wraps the model, clips gradients and gathers the full model
for saving. The loop (``cambrian.train.trainer``) is the same for all three; each strategy overrides only what
differs. Chosen by ``distributed:`` in the recipe (``auto``: DDP when launched with several processes).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn

from ..registry import Registry
from .distributed import DistEnv

STRATEGIES: Registry[type[Strategy]] = Registry("distributed strategy")


class Strategy:
    """A single process: the model itself is the engine."""

    name = "none"

    def __init__(self, env: DistEnv):
        self.env = env

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def no_sync(self, engine: nn.Module, last_micro_step: bool):
        """Skip the gradient all-reduce on accumulation micro-steps that are not the last."""
        return nullcontext()

    def needs_every_parameter(self) -> bool:
        """True when every trainable parameter must take part in each backward (DDP's reducer)."""
        return False

    def fill_missing_grads(self, params) -> None:
        """A parameter unused by the whole step (the connector on a text-only batch) still takes its Adam step with
        a zero gradient, as under DDP (and as in the official code, whose text-only samples carry a dummy image):
        the update must not depend on how the batch was split."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def clip(self, engine: nn.Module, params, max_norm: float | None) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf")))

    def full_model(self, engine: nn.Module):
        """A context in which rank 0 sees the full, unsharded parameters (for ``save_pretrained``)."""
        return nullcontext()


@STRATEGIES.register("ddp")
class DDPStrategy(Strategy):
    name = "ddp"

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.env.local_rank] if self.env.device.type == "cuda" else None
        # text-only micro-batches leave the connector unused; the loop touches every trainable parameter
        # (a zero-weighted term, ``needs_every_parameter``) so no find_unused_parameters scan is needed.
        return DDP(model, device_ids=ids)

    def no_sync(self, engine: nn.Module, last_micro_step: bool):
        return nullcontext() if last_micro_step else engine.no_sync()

    def needs_every_parameter(self) -> bool:
        return True


class _FSDPStrategy(Strategy):
    sharding = "FULL_SHARD"

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import ShardingStrategy
        from torch.distributed.fsdp.wrap import CustomPolicy

        units = {id(m) for m in model.fsdp_units()}  # the model declares them (its LLM's decoder layers)
        return FSDP(
            model,
            sharding_strategy=getattr(ShardingStrategy, self.sharding),
            auto_wrap_policy=CustomPolicy(lambda m: id(m) in units) if units else None,
            use_orig_params=True,  # frozen and trainable parameters share flat params; per-name lr groups
            device_id=self.env.device,  # on CPU too (gloo): without it FSDP looks for an accelerator
        )

    def no_sync(self, engine: nn.Module, last_micro_step: bool):
        return nullcontext() if last_micro_step else engine.no_sync()

    def fill_missing_grads(self, params) -> None:
        pass  # FSDP owns the flat gradients; an unused parameter's shard already holds zeros

    def clip(self, engine: nn.Module, params, max_norm: float | None) -> float:
        return float(engine.clip_grad_norm_(max_norm if max_norm else float("inf")))

    def full_model(self, engine: nn.Module):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.summon_full_params(engine, writeback=False, rank0_only=True, offload_to_cpu=True)


@STRATEGIES.register("fsdp_full")
class FSDPFullShard(_FSDPStrategy):
    name = "fsdp_full"
    sharding = "FULL_SHARD"


@STRATEGIES.register("fsdp_grad_op")
class FSDPShardGradOp(_FSDPStrategy):
    name = "fsdp_grad_op"
    sharding = "SHARD_GRAD_OP"


STRATEGIES.register("none", Strategy)


def make_strategy(name: str, env: DistEnv) -> Strategy:
    """The recipe's ``distributed`` value for this launch: ``auto`` is DDP with several processes; any strategy of
    a single process is the plain model."""
    if name == "auto":
        name = "ddp" if env.distributed else "none"
    elif name != "none" and not env.distributed:
        name = "none"
    return STRATEGIES.get(name)(env)
