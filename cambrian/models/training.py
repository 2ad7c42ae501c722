"""What a model declares for training (the trainer asks; it never reads parameter or class names):

- ``trainable_parameters(stage, unfreeze_vision=False, lora=False)``: the parameters that train in a stage
  (docs/official-code.md#stages: stage 1 and ``ground`` the connector; stage 2 the connector and the LLM, or the
  LLM's LoRA adapters instead of the LLM, plus the towers with ``unfreeze_vision``);
- ``lr_groups()``: every parameter in exactly one learning-rate group of :data:`LR_GROUPS` (``sva``: the modules
  the connector names as its SVA, trained with ``sva_lr``; ``vision``: the towers, with ``vision_lr``;
  ``projector``: the rest of the connector; ``llm``);
- ``fsdp_units()``: the modules FSDP wraps as units (the LLM's decoder layers; never a tower).

The helpers here serve every implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch.nn as nn

LR_GROUPS = ("sva", "projector", "llm", "vision")


def adapter_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA adapter weights peft injected into ``module`` (the adapter layers each tuner layer names)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out: list[nn.Parameter] = []
    for m in module.modules():
        if isinstance(m, BaseTunerLayer):
            for name in m.adapter_layer_names:
                out += list(getattr(m, name).parameters())
    return out


def split_off(params: Iterable[nn.Parameter], taken: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """``params`` without those in ``taken`` (by identity)."""
    ids = {id(p) for p in taken}
    return [p for p in params if id(p) not in ids]


def parameters_with_prefixes(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Parameter]:
    """The parameters whose names start with one of ``prefixes`` (or contain it, for a rule starting with ``*``):
    a recipe's explicit ``trainable:`` list, which names parameters of the model it was written for."""

    def hit(name: str) -> bool:
        return any(name.startswith(r) if not r.startswith("*") else r[1:] in name for r in prefixes)

    return [p for n, p in model.named_parameters() if hit(n)]


def check_lr_groups(model: nn.Module, groups: dict[str, list[nn.Parameter]]) -> None:
    """A model's ``lr_groups()`` must put every parameter in exactly one group of :data:`LR_GROUPS` (a broken
    declaration is a bug of the model: ``TypeError``)."""
    unknown = set(groups) - set(LR_GROUPS)
    if unknown:
        raise TypeError(f"{type(model).__name__}.lr_groups: unknown groups {sorted(unknown)} (valid: {LR_GROUPS})")
    seen: dict[int, str] = {}
    for g, params in groups.items():
        for p in params:
            if id(p) in seen:
                raise TypeError(f"{type(model).__name__}.lr_groups: a parameter is in both {seen[id(p)]!r} and {g!r}")
            seen[id(p)] = g
    missing = sum(1 for p in model.parameters() if id(p) not in seen)
    if missing:
        raise TypeError(f"{type(model).__name__}.lr_groups: {missing} parameters are in no group")
